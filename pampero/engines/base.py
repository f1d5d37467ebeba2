"""The engine seam: what serving code may know about an engine.

An engine turns a tokenized prompt plus sampling parameters into a stream of per-step events.
Serving code only ever sees this protocol and the types of ``pampero.inference``; concrete
engines live in sub-packages and are reached through ``pampero.engines.registry``.

Example::

    engine = registry.create("llamacpp", options)      # options: EngineOptions
    await engine.start()
    request = GenerationRequest(request_id="r1", prompt_tokens=engine.tokenizer.encode("Hi"),
                                sampling=SamplingParams(max_tokens=8, temperature=0.0))
    async for event in engine.generate(request):
        for delta in event.deltas:
            print(delta.index, delta.text, delta.finish_reason)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pampero.inference import (
    Capabilities,
    EngineEvent,
    EngineStats,
    GenerationRequest,
    SpeculativeParams,
    Tokenizer,
)


@dataclass(frozen=True)
class EngineOptions:
    """What an engine factory is given: one model, and the engine knobs that apply to it (the
    server's settings, overridden per model). Serving builds it from the settings; engines
    never read the settings themselves."""

    model_id: str
    path: str  # a local file or directory, or "default": the embedded model under ``home``
    home: Path
    n_ctx: int
    max_seqs: int = 8
    max_queue: int = 64
    threads: int = 1
    threads_batch: int = 1
    n_batch: int = 512
    prefill_chunk: int = 256
    kv_unified: bool = False
    prefix_cache: bool = True
    mmproj: str | None = None
    draft_model: str | None = None  # a .gguf with the same vocabulary (speculative "draft")
    speculative: SpeculativeParams | None = None  # for requests that do not choose
    prefix_cache_tokens: int = 0  # KV kept for finished prompts beyond the slots


class Engine(Protocol):
    """A loaded model with its own scheduler. See the module docstring for an example."""

    model_id: str
    tokenizer: Tokenizer
    capabilities: Capabilities
    chat_template: str | None

    async def start(self) -> None: ...

    async def halt(self) -> None:
        """End every request still queued or running (``EngineNotReady``) and take no more;
        the model stays loaded (serving code may still hold its tokenizer) until ``stop``."""
        ...

    async def stop(self) -> None:
        """``halt``, then free the model."""
        ...

    def is_alive(self) -> bool: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[EngineEvent]:
        """Stream events until every choice finished. Closing the iterator aborts the request
        and frees its memory within one step. Raises ``Overloaded`` when the queue is full."""
        ...

    def generate_batch(
        self, requests: Sequence[GenerationRequest]
    ) -> list[AsyncIterator[EngineEvent]]:
        """``generate`` for several requests, all submitted or none: when one is refused (its
        own error, or ``Overloaded`` because the queue cannot hold them all), nothing is
        queued. A batched ``/v1/completions`` request is admitted this way."""
        ...

    def stats(self) -> EngineStats: ...
