"""The message-level seam: a ``ChatBackend`` answers validated requests with typed chunks.

Local serving (prompt rendering, tools, constraints, an engine) is one backend; an upstream
OpenAI-compatible server is another; a router is a backend that wraps several, the way httpx
transports wrap transports. The HTTP edge resolves a request's ``model`` to a backend through
the ``Catalogue``, refuses what the backend says it cannot honour, and turns its ``Reply`` into
JSON or server-sent events. A backend never writes bytes.

A backend declares what it serves in its ``ModelCard``: the id and aliases, context length,
capabilities, the request fields it honours (``None``: it does its own checking) and its price.

Example: a backend that answers every chat with the last user message (a test runs it)::

    class Echo(BackendBase):
        def __init__(self) -> None:
            self.card = ModelCard(id="echo", supported_params=frozenset({"messages"}))

        async def chat(self, parsed, context):
            text = str(parsed.request.messages[-1].content)
            return Reply(body=chat_body(self.card.id, text))

    def echo_backends(environment: BackendEnvironment) -> list[ChatBackend]:
        return [Echo()]          # register "module:echo_backends" with --backend

"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pampero.errors import NotFoundError
from pampero.pricing import Price as Price
from pampero.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    Parsed,
    TokenizeRequest,
)
from pampero.protocol.common import GenerationFields
from pampero.protocol.replies import ChatCompletion, ChatCompletionChunk, Reply
from pampero.settings import Settings

# Fields every backend takes: they name the request itself, not a way to generate.
ALWAYS_SUPPORTED = frozenset({"model", "messages", "prompt", "stream"})


@dataclass(frozen=True)
class ModelCard:
    """What one backend serves, as ``/v1/models`` shows it and a router reads it."""

    id: str
    aliases: tuple[str, ...] = ()
    provider: str = "local"
    owned_by: str = "pampero"
    created: int = field(default_factory=lambda: int(time.time()))
    context_length: int | None = None
    capabilities: dict[str, bool] = field(default_factory=dict)
    # The request fields this backend honours; None: it checks every field itself.
    supported_params: frozenset[str] | None = None
    price: Price | None = None
    serves_completions: bool = False
    serves_tokens: bool = False  # /tokenize and /detokenize

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


@dataclass(frozen=True)
class RequestContext:
    """What the edge knows about a request beyond its body."""

    arrival: float  # time.perf_counter() when the request arrived
    deadline: float | None = None  # perf_counter() time by which it must have ended
    caller: str | None = None  # the API key's id, once accounts exist
    priority: int | None = None  # overrides the body's priority (an account's tier)
    request_id: str = ""
    session: str | None = None  # a session key for provider affinity (x-session-id header)


class ChatBackend(Protocol):
    """Answers chat (and, if its card says so, completions) requests for its model card."""

    @property
    def card(self) -> ModelCard: ...

    def unsupported(self, request: GenerationFields) -> list[str]:
        """The fields of ``request`` this backend cannot honour (the caller refuses them)."""
        ...

    async def chat(
        self, parsed: Parsed[ChatCompletionRequest], context: RequestContext
    ) -> Reply: ...

    async def complete(self, parsed: Parsed[CompletionRequest], context: RequestContext) -> Reply:
        """``POST /v1/completions``; a backend whose card does not serve it raises 404."""
        ...

    async def tokenize(self, parsed: Parsed[TokenizeRequest], context: RequestContext) -> Reply:
        """vLLM's ``POST /tokenize``; a backend whose card does not serve it raises 404."""
        ...

    async def detokenize(self, parsed: Parsed[DetokenizeRequest], context: RequestContext) -> Reply:
        """vLLM's ``POST /detokenize``; like ``tokenize``."""
        ...


class BackendBase(ABC):
    """Defaults for a ``ChatBackend``: fields checked against the card, no completions. A
    subclass sets ``card`` and implements ``chat``."""

    card: ModelCard

    def unsupported(self, request: GenerationFields) -> list[str]:
        return unsupported_fields(self.card, request)

    @abstractmethod
    async def chat(self, parsed: Parsed[ChatCompletionRequest], context: RequestContext) -> Reply:
        """Answer one validated chat request (see ``ChatBackend.chat``)."""

    async def complete(self, parsed: Parsed[CompletionRequest], context: RequestContext) -> Reply:
        raise NotFoundError(
            f"the model '{self.card.id}' does not serve /v1/completions; use /v1/chat/completions",
            param="model",
            code="model_not_found",
        )

    async def tokenize(self, parsed: Parsed[TokenizeRequest], context: RequestContext) -> Reply:
        raise self._no_tokens("/tokenize")

    async def detokenize(self, parsed: Parsed[DetokenizeRequest], context: RequestContext) -> Reply:
        raise self._no_tokens("/detokenize")

    def _no_tokens(self, path: str) -> NotFoundError:
        return NotFoundError(
            f"the model '{self.card.id}' does not serve {path}",
            param="model",
            code="model_not_found",
        )


def unsupported_fields(card: ModelCard, request: GenerationFields) -> list[str]:
    """The fields sent in ``request`` that ``card`` does not list as supported."""
    if card.supported_params is None:
        return []
    allowed = card.supported_params | ALWAYS_SUPPORTED
    return sorted(name for name in request.model_fields_set if name not in allowed)


@dataclass
class BackendEnvironment:
    """What a backend factory may use to build its backends."""

    settings: Settings
    services: Any  # pampero.serving.services.Services: local serving, for the local backend


class BackendFactory(Protocol):
    def __call__(self, environment: BackendEnvironment) -> Iterable[ChatBackend]: ...


def chat_body(model: str, text: str, *, finish_reason: str = "stop") -> ChatCompletion:
    """A minimal whole chat completion carrying ``text`` (for simple backends and tests)."""
    return ChatCompletion(
        id=f"chatcmpl-{time.time_ns():x}",
        object="chat.completion",
        created=int(time.time()),
        model=model,
        choices=[
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        usage={
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    )


def chat_chunk(
    model: str, delta: dict[str, Any], *, finish_reason: str | None = None, id: str = ""
) -> ChatCompletionChunk:
    """One streamed chunk of choice 0 (for simple backends and tests); the edge frames it as
    SSE. Chunks of one answer should share ``id``."""
    return ChatCompletionChunk(
        id=id or f"chatcmpl-{model}",
        object="chat.completion.chunk",
        created=int(time.time()),
        model=model,
        choices=[{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    )
