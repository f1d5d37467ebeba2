"""Response bodies in OpenAI's shapes (plus vLLM's extra fields), as plain dicts.

Plain dicts serialised by orjson keep per-chunk work small on the streaming path.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pampero import __version__
from pampero.inference import Tokenizer, TokenLogprob
from pampero.pricing import Price, micro_usd, usd
from pampero.protocol.common import StreamOptions
from pampero.protocol.replies import ChatCompletionChunk, TextCompletion

# OpenAI reports an impossible token's log-probability as -9999.0, never -inf (not JSON).
LOGPROB_FLOOR = -9999.0


def clamp(logprob: float) -> float:
    return max(logprob, LOGPROB_FLOOR)


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def fingerprint(model_id: str) -> str:
    digest = hashlib.sha256(f"{model_id}:{__version__}".encode()).hexdigest()
    return f"fp_{digest[:10]}"


@dataclass
class Envelope:
    """The fields every response and chunk of one request share."""

    id: str
    model: str
    fingerprint: str
    created: int = field(default_factory=lambda: int(time.time()))

    def chat_chunk(self, choices: list[dict[str, Any]]) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id,
            object="chat.completion.chunk",
            created=self.created,
            model=self.model,
            system_fingerprint=self.fingerprint,
            choices=choices,
        )

    def text_completion(self, choices: list[dict[str, Any]]) -> TextCompletion:
        return TextCompletion(
            id=self.id,
            object="text_completion",
            created=self.created,
            model=self.model,
            system_fingerprint=self.fingerprint,
            choices=choices,
        )


@dataclass(frozen=True)
class StreamUsage:
    """What ``stream_options`` asks of a stream's usage: a last chunk carrying it
    (``include``), and vLLM's running total in every chunk (``continuous``)."""

    include: bool
    continuous: bool

    @classmethod
    def of(cls, options: StreamOptions | None) -> StreamUsage:
        return cls(
            include=bool(options and options.include_usage),
            continuous=bool(options and options.continuous_usage_stats),
        )

    @property
    def in_chunks(self) -> bool:
        """Whether every chunk has a ``usage`` key (null but in the continuous case)."""
        return self.include or self.continuous


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    images: int = 0
    price: Price | None = None  # the model's; set, the body carries ``cost`` (USD)

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.images += other.images
        self.price = self.price or other.price

    def cost_micro_usd(self) -> int | None:
        if self.price is None:
            return None
        return micro_usd(
            self.price,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            images=self.images,
        )

    def body(self) -> dict[str, Any]:
        body = self._tokens()
        cost = self.cost_micro_usd()
        if cost is not None:
            body["cost"] = usd(cost)
        return body

    def _tokens(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


class TokenNames:
    """How tokens are named in logprobs: their text, or ``token_id:N`` on request."""

    def __init__(self, tokenizer: Tokenizer, *, as_ids: bool) -> None:
        self.tokenizer = tokenizer
        self.as_ids = as_ids

    def name(self, token_id: int) -> str:
        if self.as_ids:
            return f"token_id:{token_id}"
        return self.tokenizer.token_bytes(token_id).decode("utf-8", "replace")

    def entry(self, token_id: int, logprob: float) -> dict[str, Any]:
        return {
            "token": self.name(token_id),
            "logprob": clamp(logprob),
            "bytes": list(self.tokenizer.token_bytes(token_id)),
        }


def chat_logprobs(names: TokenNames, entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """OpenAI's chat ``logprobs`` object for some generated tokens."""
    content = []
    for e in entries:
        item = names.entry(e.token_id, e.logprob)
        item["top_logprobs"] = [names.entry(t, lp) for t, lp in e.top]
        content.append(item)
    return {"content": content, "refusal": None}


@dataclass
class CompletionLogprobs:
    """The legacy completions ``logprobs`` object, built as text grows."""

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def add(self, names: TokenNames, entries: Sequence[TokenLogprob], offset: int) -> None:
        for e in entries:
            self.tokens.append(names.name(e.token_id))
            self.token_logprobs.append(clamp(e.logprob))
            self.top_logprobs.append({names.name(t): clamp(lp) for t, lp in e.top})
            self.text_offset.append(offset)
            offset += len(self.tokens[-1])

    def body(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }


def prompt_logprobs_body(
    names: TokenNames, prompt: Sequence[int], entries: Sequence[TokenLogprob | None] | None
) -> list[dict[str, dict[str, Any]] | None] | None:
    """vLLM's ``prompt_logprobs``: per prompt token, {token_id: {logprob, rank, decoded_token}}."""
    if entries is None:
        return None
    out: list[dict[str, dict[str, Any]] | None] = []
    for token_id, entry in zip(prompt, entries, strict=False):
        if entry is None:
            out.append(None)
            continue
        ranked = {t: (rank + 1, lp) for rank, (t, lp) in enumerate(entry.top)}
        item: dict[str, dict[str, Any]] = {
            str(token_id): {
                "logprob": clamp(entry.logprob),
                "rank": entry.rank,
                "decoded_token": names.name(token_id),
            }
        }
        for t, (rank, lp) in ranked.items():
            item.setdefault(
                str(t), {"logprob": clamp(lp), "rank": rank, "decoded_token": names.name(t)}
            )
        out.append(item)
    return out
