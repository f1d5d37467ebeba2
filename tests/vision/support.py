"""Helpers for vision tests: images, an event loop that outlives one test, and event folding."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from pampero.engines.base import Engine
from pampero.inference import GenerationRequest, TokenLogprob

T = TypeVar("T")


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A deterministic RGB image of random pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


class LoopThread:
    """An asyncio loop on its own thread: an engine started on it serves many tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Choice:
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None


@dataclass
class Outcome:
    choices: dict[int, Choice] = field(default_factory=dict)
    prompt_tokens: int = 0
    prompt_logprobs: list[TokenLogprob | None] | None = None
    events: int = 0

    @property
    def only(self) -> Choice:
        (choice,) = self.choices.values()
        return choice


async def collect(engine: Engine, request: GenerationRequest) -> Outcome:
    """Every event of ``request``, folded per choice."""
    out = Outcome()
    async for event in engine.generate(request):
        out.events += 1
        out.prompt_tokens = event.prompt_tokens
        if event.prompt_logprobs is not None:
            out.prompt_logprobs = event.prompt_logprobs
        for delta in event.deltas:
            choice = out.choices.setdefault(delta.index, Choice())
            assert choice.finish_reason is None, "a delta after the finishing one"
            choice.token_ids += delta.token_ids
            choice.text += delta.text
            choice.logprobs += delta.logprobs or []
            choice.finish_reason = delta.finish_reason
            choice.stop_reason = delta.stop_reason
    return out
