"""One engine request as serving sees it: metrics, usage, and each choice's output so far."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pampero.inference import EngineEvent, GenerationRequest, SequenceDelta, TokenLogprob
from pampero.observability import Metrics
from pampero.serving.hub import ServedModel
from pampero.serving.responses import Usage

C = TypeVar("C")
_REPORT_EVERY = 16  # tokens


@dataclass
class Choice:
    index: int
    text: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None

    def absorb(self, delta: SequenceDelta) -> None:
        if delta.text:
            self.text.append(delta.text)
        self.token_ids.extend(delta.token_ids)
        if delta.logprobs:
            self.logprobs.extend(delta.logprobs)
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
            self.stop_reason = delta.stop_reason


class Generation:
    """Submits at construction (so queue and context errors come before any response byte)
    and is then iterated once, either event by event (streaming) or all at once (``run``)."""

    def __init__(
        self,
        served: ServedModel,
        request: GenerationRequest,
        metrics: Metrics,
        arrival: float,
        stream: AsyncIterator[EngineEvent] | None = None,
    ) -> None:
        self.served = served
        self.request = request
        self.metrics = metrics
        self.arrival = arrival
        self.usage = Usage(
            prompt_tokens=len(request.prompt_tokens),
            images=len(request.images),
            price=served.config.price,
        )
        self.choices = [Choice(i) for i in range(request.sampling.n)]
        self.prompt_logprobs: list[TokenLogprob | None] | None = None
        self._stream = stream if stream is not None else served.engine.generate(request)
        self._head: list[EngineEvent] = []  # taken by ``wait_started``, not yet yielded
        self._last_token_at: float | None = None
        self._closed = False
        self.draft_tokens = 0  # speculative decoding, whole request
        self.accepted_draft_tokens = 0
        # Looked up once: a labels() lookup per token costs more than the observation.
        self._inter_token = metrics.inter_token_latency.labels(served.id)
        self._generated = metrics.generation_tokens.labels(served.id)
        # Per-token figures reach the metrics in batches (see ``_report``).
        self._gaps: list[float] = []
        self._unreported_tokens = 0

    @classmethod
    def batch(
        cls,
        served: ServedModel,
        requests: Sequence[GenerationRequest],
        metrics: Metrics,
        arrival: float,
    ) -> list[Generation]:
        """Submit every request or none (``Engine.generate_batch``)."""
        streams = served.engine.generate_batch(requests)
        return [
            cls(served, request, metrics, arrival, stream)
            for request, stream in zip(requests, streams, strict=True)
        ]

    async def wait_started(self) -> None:
        """Wait for the engine's first event (``events`` still yields it first).

        For a stream whose prompt holds images: only the engine learns how long such a prompt
        is, once it has expanded the images, so a prompt too long for the context fails then.
        Waiting here, before the response's first byte, keeps that failure a 400 rather than
        an error event inside a 200 stream."""
        try:
            self._head.append(await anext(aiter(self._stream)))
        except StopAsyncIteration:
            pass
        except BaseException:
            await self.aclose()
            raise

    async def events(self) -> AsyncIterator[EngineEvent]:
        """Engine events, each already folded into ``choices`` and ``usage``."""
        model = self.served.id
        try:
            while self._head:
                event = self._head.pop(0)
                self._fold(event, model)
                yield event
            async for event in self._stream:
                self._fold(event, model)
                yield event
        finally:
            await self.aclose()

    def _fold(self, event: EngineEvent, model: str) -> None:
        self._observe(event, model)
        for delta in event.deltas:
            if delta.error is not None:  # e.g. a constraint over its CPU budget
                raise delta.error
            self.choices[delta.index].absorb(delta)

    async def aclose(self) -> None:
        """Abort the engine request unless it finished; safe to call again, and whether or
        not ``events`` was ever started."""
        if self._closed:
            return
        self._closed = True
        self._report()
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()
        latency = time.perf_counter() - self.arrival
        self.metrics.request_latency.labels(self.served.id).observe(latency)

    async def run(self) -> None:
        """Consume every event (non-streaming)."""
        async for _ in self.events():
            pass

    def _observe(self, event: EngineEvent, model: str) -> None:
        now = time.perf_counter()
        new_tokens = sum(len(d.token_ids) for d in event.deltas)
        if event.prompt_logprobs is not None:
            self.prompt_logprobs = event.prompt_logprobs
        self.usage.cached_tokens = event.cached_tokens
        self.usage.prompt_tokens = event.prompt_tokens  # image tokens included
        self._observe_drafts(event, model)
        if not new_tokens:
            return
        if self._last_token_at is None:
            self.metrics.time_to_first_token.labels(model).observe(now - self.arrival)
            self.metrics.prompt_tokens.labels(model).inc(self.usage.prompt_tokens)
            self.metrics.cached_prompt_tokens.labels(model).inc(self.usage.cached_tokens)
        else:
            self._gaps.append(now - self._last_token_at)
        self._last_token_at = now
        self.usage.completion_tokens += new_tokens
        self._unreported_tokens += new_tokens
        if len(self._gaps) >= _REPORT_EVERY:
            self._report()

    def _report(self) -> None:
        """Hand the tokens and inter-token gaps seen since the last report to the metrics.

        Every _REPORT_EVERY tokens and at the end, not per token: a prometheus observation
        or increment is a few Python calls and a lock, and per token they ran with cold
        caches on the event loop, whose time comes out of the decode's at one stream. A
        scrape during a stream sees its counts at most that many tokens late."""
        if self._unreported_tokens:
            self._generated.inc(self._unreported_tokens)
            self._unreported_tokens = 0
        for gap in self._gaps:
            self._inter_token.observe(gap)
        self._gaps.clear()

    def _observe_drafts(self, event: EngineEvent, model: str) -> None:
        if event.draft_tokens > self.draft_tokens:
            self.metrics.draft_tokens.labels(model).inc(event.draft_tokens - self.draft_tokens)
            self.metrics.accepted_draft_tokens.labels(model).inc(
                event.accepted_draft_tokens - self.accepted_draft_tokens
            )
            self.draft_tokens = event.draft_tokens
            self.accepted_draft_tokens = event.accepted_draft_tokens


def speculation_header(generations: Sequence[Generation]) -> dict[str, str]:
    """``x-pampero-speculative-acceptance: <rate> (<accepted>/<drafted>)`` for a finished
    request that verified drafts; nothing otherwise (a stream's headers leave before its
    tokens, so only whole responses carry it; ``/metrics`` counts both)."""
    drafted = sum(g.draft_tokens for g in generations)
    if not drafted:
        return {}
    accepted = sum(g.accepted_draft_tokens for g in generations)
    return {"x-pampero-speculative-acceptance": f"{accepted / drafted:.3f} ({accepted}/{drafted})"}


async def run_all(generations: Sequence[Generation]) -> None:
    """Consume every generation at once (non-streaming); the first failure, or this task being
    cancelled (the client left), aborts all of them before it propagates."""
    try:
        if len(generations) == 1:
            await generations[0].run()
            return
        tasks = [asyncio.ensure_future(g.run()) for g in generations]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if task in done and not task.cancelled() and (error := task.exception()):
                raise error
    finally:
        await close_all(generations)


async def close_all(generations: Sequence[Generation]) -> None:
    """Abort every generation that has not finished."""
    for generation in generations:
        await generation.aclose()


class OwnedStream(Generic[C]):
    """A reply's chunks that own generations: closing it aborts each of them, even if the
    chunks were never iterated (a client that left before the first byte), which closing a
    plain async generator that never started would not do. Closing twice is harmless."""

    def __init__(self, chunks: AsyncIterator[C], generations: Sequence[Generation]) -> None:
        self._chunks = chunks
        self._generations = list(generations)
        self._closed = False

    def __aiter__(self) -> AsyncIterator[C]:
        # ``async for`` reads the chunks themselves (one resumption less per token); what
        # owns the generations is still this object, and its ``aclose`` is what aborts them.
        return self._chunks

    async def __anext__(self) -> C:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            closer = getattr(self._chunks, "aclose", None)
            if closer is not None:
                await closer()
        finally:
            await close_all(self._generations)
