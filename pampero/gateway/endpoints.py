"""What the router does differently per endpoint: chat, completions, tokenize, detokenize.

The router's loop (candidates, one deadline, failover, the stream's commit) is the same for
every endpoint a gateway routes; an ``Endpoint`` says how to ask one provider, whether a
provider serves the endpoint at all, whether the answer names who answered, and what an
in-band error chunk looks like on its stream. Example::

    reply = await Routing(gateway, COMPLETIONS, parsed, context, model).run()
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pampero.backends.base import ChatBackend, RequestContext
from pampero.gateway.selection import ROUTING_FIELDS
from pampero.protocol import Parsed
from pampero.protocol.common import StreamOptions
from pampero.protocol.replies import Chunk, Reply

if TYPE_CHECKING:
    from pampero.gateway.router import Provider

Ask = Callable[[ChatBackend, Parsed[Any], RequestContext], Awaitable[Reply]]


@dataclass(frozen=True)
class Endpoint:
    path: str  # as a client calls it, for messages
    ask: Ask
    serves: Callable[[Provider], bool]
    chunk_object: str = ""  # the object of a stream chunk ("": never streamed)
    names_answer: bool = True  # the answer carries ``model`` and ``provider``

    def error_chunk(
        self, last: Chunk | None, model: str, provider: str, reason: str, timeout: bool
    ) -> dict[str, Any]:
        """The chunk ending a committed stream that failed: an error, ``finish_reason: error``."""
        code = "upstream_timeout" if timeout else "upstream_error"
        choice: dict[str, Any] = {"index": 0, "finish_reason": "error"}
        if self.chunk_object == "text_completion":
            choice.update(text="", logprobs=None)
        else:
            choice["delta"] = {}
        return {
            "id": last["id"] if last else "chatcmpl-error",
            "object": self.chunk_object,
            "created": last["created"] if last else int(time.time()),
            "model": model,
            "provider": provider,
            "error": {
                "message": f"The provider '{provider}' failed mid-stream: {reason}. The answer "
                "is incomplete.",
                "type": "upstream_error",
                "param": None,
                "code": code,
            },
            "choices": [choice],
        }


async def _chat(backend: ChatBackend, parsed: Parsed[Any], context: RequestContext) -> Reply:
    return await backend.chat(parsed, context)


async def _complete(backend: ChatBackend, parsed: Parsed[Any], context: RequestContext) -> Reply:
    return await backend.complete(parsed, context)


async def _tokenize(backend: ChatBackend, parsed: Parsed[Any], context: RequestContext) -> Reply:
    return await backend.tokenize(parsed, context)


async def _detokenize(backend: ChatBackend, parsed: Parsed[Any], context: RequestContext) -> Reply:
    return await backend.detokenize(parsed, context)


CHAT = Endpoint("/v1/chat/completions", _chat, lambda p: True, "chat.completion.chunk")
COMPLETIONS = Endpoint(
    "/v1/completions", _complete, lambda p: p.card.serves_completions, "text_completion"
)
TOKENIZE = Endpoint("/tokenize", _tokenize, lambda p: p.card.serves_tokens, names_answer=False)
DETOKENIZE = Endpoint(
    "/detokenize", _detokenize, lambda p: p.card.serves_tokens, names_answer=False
)


def attempt_request(parsed: Parsed[Any], model: str, stream: bool) -> Parsed[Any]:
    """The request one provider gets: its own model id, no routing fields, and (streamed)
    usage asked for, so that every answer can be billed."""
    request = parsed.request
    update: dict[str, Any] = {"model": model}
    raw = {k: v for k, v in parsed.raw.items() if k not in ROUTING_FIELDS}
    raw["model"] = model
    fields = set(request.model_fields_set) - ROUTING_FIELDS
    fields.add("model")
    if "provider" in type(request).model_fields:
        update["provider"] = update["models"] = None
    if stream:
        options = request.stream_options or StreamOptions()
        update["stream_options"] = options.model_copy(update={"include_usage": True})
        raw["stream_options"] = {**(raw.get("stream_options") or {}), "include_usage": True}
        fields.add("stream_options")
    copy = request.model_copy(update=update)
    object.__setattr__(copy, "__pydantic_fields_set__", fields)
    return Parsed(request=copy, ignored=parsed.ignored, raw=raw)
