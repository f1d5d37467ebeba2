"""A priced backend that takes as long as the request asks, for the accounts tests: a request
that is still in flight when its server is killed, or that holds a parallel slot.

``--backend tests.slow_backend:slow_backends`` serves the model ``slow``; a chat answers after
``metadata.seconds`` (default 0) with fixed usage: 10 prompt and 5 completion tokens at $1 and
$2 per million, so each answer costs 20 micro-USD.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pampero.backends import BackendEnvironment, ChatBackend, ModelCard, RequestContext
from pampero.backends.base import BackendBase, chat_body
from pampero.pricing import Price
from pampero.protocol import ChatCompletionRequest, Parsed
from pampero.protocol.replies import Reply

PRICE = Price(prompt=1.0, completion=2.0)


class Slow(BackendBase):
    def __init__(self) -> None:
        self.card = ModelCard(
            id="slow",
            provider="slow",
            context_length=1000,
            price=PRICE,
            supported_params=frozenset({"max_tokens", "metadata", "priority", "stream_options"}),
        )

    async def chat(self, parsed: Parsed[ChatCompletionRequest], context: RequestContext) -> Reply:
        metadata: Any = parsed.request.metadata or {}
        seconds = float(metadata.get("seconds", 0))
        await asyncio.sleep(seconds)
        body = chat_body(
            self.card.id, f"slept {seconds} s, caller {context.caller}, priority {context.priority}"
        )
        body["usage"] = {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        return Reply(body=body)


def slow_backends(environment: BackendEnvironment) -> list[ChatBackend]:
    return [Slow()]
