"""What a backend answers: whole responses and stream chunks as typed dicts, never bytes.

The shapes are OpenAI's (plus vLLM's extra fields, ``provider`` where a router sets it).
A backend returns a ``Reply``: a whole ``body``, or a ``stream`` of chunks; the HTTP edge
alone turns them into JSON or server-sent events (framing, ``[DONE]``, in-band errors).
Plain dicts serialised by orjson keep per-chunk work small; the ``TypedDict``s give the
top-level keys a type so that a router can read ``choices`` and ``usage`` without guessing.

Example (a backend's stream)::

    async def chunks() -> AsyncIterator[Chunk]:
        yield ChatCompletionChunk(id="chatcmpl-1", object="chat.completion.chunk",
                                  created=0, model="m", choices=[{"index": 0,
                                  "delta": {"content": "hi"}, "finish_reason": None}])
    return Reply(stream=chunks())
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NotRequired

# typing_extensions' TypedDict: pydantic reads these (the OpenAPI document) only in that form
# before Python 3.12.
from typing_extensions import TypedDict


class UsageBody(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int]
    completion_tokens_details: dict[str, int]
    cost: NotRequired[float]


class ChatCompletion(TypedDict):
    id: str
    object: str  # "chat.completion"
    created: int
    model: str
    system_fingerprint: NotRequired[str | None]
    choices: list[dict[str, Any]]
    usage: NotRequired[UsageBody | dict[str, Any] | None]
    prompt_logprobs: NotRequired[Any]
    service_tier: NotRequired[str | None]
    provider: NotRequired[str]


class ChatCompletionChunk(TypedDict):
    id: str
    object: str  # "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: NotRequired[str | None]
    choices: list[dict[str, Any]]
    usage: NotRequired[UsageBody | dict[str, Any] | None]
    prompt_logprobs: NotRequired[Any]
    provider: NotRequired[str]


class TextCompletion(TypedDict):
    """A legacy completion, whole or as one stream chunk (OpenAI uses one shape for both)."""

    id: str
    object: str  # "text_completion"
    created: int
    model: str
    system_fingerprint: NotRequired[str | None]
    choices: list[dict[str, Any]]
    usage: NotRequired[UsageBody | dict[str, Any] | None]
    provider: NotRequired[str]


Chunk = ChatCompletionChunk | TextCompletion
Body = ChatCompletion | TextCompletion | dict[str, Any]


@dataclass
class Reply:
    """A backend's answer: a whole ``body``, or a ``stream`` of chunks, plus headers."""

    body: Body | None = None
    stream: AsyncIterator[Chunk] | None = None
    headers: dict[str, str] = field(default_factory=dict)


__all__ = [
    "Body",
    "ChatCompletion",
    "ChatCompletionChunk",
    "Chunk",
    "Reply",
    "TextCompletion",
    "UsageBody",
]
