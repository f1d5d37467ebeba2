"""One engine request as serving sees it: metrics, usage, and each choice's output so far."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pampero.engines.base import EngineEvent, GenerationRequest, SequenceDelta, TokenLogprob
from pampero.observability import Metrics
from pampero.serving.hub import ServedModel
from pampero.serving.responses import Usage


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
    ) -> None:
        self.served = served
        self.request = request
        self.metrics = metrics
        self.arrival = arrival
        self.usage = Usage(prompt_tokens=len(request.prompt_tokens))
        self.choices = [Choice(i) for i in range(request.sampling.n)]
        self.prompt_logprobs: list[TokenLogprob | None] | None = None
        self._stream = served.engine.generate(request)
        self._head: list[EngineEvent] = []  # taken by ``wait_started``, not yet yielded
        self._last_token_at: float | None = None

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
            await self._close()
            raise

    async def events(self) -> AsyncIterator[EngineEvent]:
        """Engine events, each already folded into ``choices`` and ``usage``."""
        model = self.served.id
        try:
            async for event in self._engine_events():
                self._observe(event, model)
                for delta in event.deltas:
                    if delta.error is not None:  # e.g. a constraint over its CPU budget
                        raise delta.error
                    self.choices[delta.index].absorb(delta)
                yield event
        finally:
            await self._close()

    async def _engine_events(self) -> AsyncIterator[EngineEvent]:
        while self._head:
            yield self._head.pop(0)
        async for event in self._stream:
            yield event

    async def _close(self) -> None:
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
        if not new_tokens:
            return
        if self._last_token_at is None:
            self.metrics.time_to_first_token.labels(model).observe(now - self.arrival)
            self.metrics.prompt_tokens.labels(model).inc(self.usage.prompt_tokens)
        else:
            self.metrics.inter_token_latency.labels(model).observe(now - self._last_token_at)
        self._last_token_at = now
        self.usage.completion_tokens += new_tokens
        self.metrics.generation_tokens.labels(model).inc(new_tokens)
