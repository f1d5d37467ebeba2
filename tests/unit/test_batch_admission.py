"""A batch of prompts (``/v1/completions`` with a list) is one request to its client: it is
queued as a unit or not at all, and when one of its prompts fails or the client leaves, every
sibling is aborted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pampero.errors import ContextLengthExceeded, EngineError, InvalidRequestError, Overloaded
from pampero.inference import EngineEvent, GenerationRequest, SamplingParams, SequenceDelta
from pampero.observability import Metrics
from pampero.serving.generation import Generation, OwnedStream, run_all
from pampero.settings import ModelConfig
from tests.fakes import Collector, FakeRunner, SchedulerHarness


def _request(h: SchedulerHarness, prompt: str, **sampling: Any) -> GenerationRequest:
    sampling.setdefault("temperature", 0.0)
    return GenerationRequest(
        request_id=prompt,
        prompt_tokens=h.tokenizer.encode(prompt),
        sampling=SamplingParams(**sampling),
    )


def _submit_batch(h: SchedulerHarness, prompts: list[str], **sampling: Any) -> list[Collector]:
    sinks = [Collector() for _ in prompts]
    batch = [(_request(h, p, **sampling), sink) for p, sink in zip(prompts, sinks, strict=True)]
    actives = h.scheduler.submit_batch(batch)  # type: ignore[arg-type]
    for sink, active in zip(sinks, actives, strict=True):
        sink.active = active
    h.collectors += sinks
    return sinks


def test_a_batch_that_fits_is_queued_whole_and_served() -> None:
    h = SchedulerHarness(max_seqs=2, max_queue=3)
    sinks = _submit_batch(h, ["a", "b", "c", "d", "e"], max_tokens=2)  # 2 run, 3 wait
    assert h.scheduler.stats().waiting == 5
    h.run()
    assert all(s.closed and s.error is None and len(s.token_ids()) == 2 for s in sinks)


def test_a_batch_the_queue_cannot_hold_leaves_nothing_queued() -> None:
    h = SchedulerHarness(max_seqs=2, max_queue=3)
    busy = h.submit("busy", max_tokens=20)
    h.step()  # one slot busy, one free: room for 1 + 3
    with pytest.raises(Overloaded):
        _submit_batch(h, ["a", "b", "c", "d", "e"], max_tokens=2)
    assert h.scheduler.stats().waiting == 0
    h.step()
    assert h.scheduler.stats().running == 1  # only the request that was already there
    fits = _submit_batch(h, ["a", "b", "c", "d"], max_tokens=2)
    h.run()
    assert busy.closed and all(s.closed and s.error is None for s in fits)


def test_a_batch_larger_than_the_server_can_ever_hold_is_a_400() -> None:
    h = SchedulerHarness(max_seqs=2, max_queue=3)
    with pytest.raises(InvalidRequestError) as refused:
        _submit_batch(h, [f"p{i}" for i in range(6)], max_tokens=2)
    assert refused.value.status_code == 400 and refused.value.param == "prompt"
    assert h.scheduler.stats().waiting == 0


def test_one_prompt_refused_refuses_the_batch_before_any_is_queued() -> None:
    h = SchedulerHarness(FakeRunner(n_ctx_seq=16), max_seqs=2)
    with pytest.raises(ContextLengthExceeded):
        _submit_batch(h, ["short", "x" * 16, "also short"], max_tokens=2)
    assert h.scheduler.stats().waiting == 0
    h.step()
    assert h.scheduler.stats().running == 0 and h.runner.batches == []


# -- serving: a batch's generations live and die together ----------------------------------------


class _Served:
    id = "fake"
    config = ModelConfig(id="fake")


class _Stream:
    """An engine stream: ``events`` then the end, or ``error``, or (``endless``) never ending."""

    def __init__(self, events: int = 1, *, error: BaseException | None = None, endless=False):
        self.events, self.error, self.endless = events, error, endless
        self.closed = False

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> EngineEvent:
        await asyncio.sleep(0)
        if self.closed:
            raise StopAsyncIteration
        if self.events > 0 or self.endless:
            self.events -= 1
            return EngineEvent(deltas=[SequenceDelta(0, "x", [1])], prompt_tokens=1)
        if self.error is not None:
            raise self.error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


def _generations(streams: list[_Stream]) -> list[Generation]:
    metrics = Metrics(lambda: {})
    request = GenerationRequest("r", [1], SamplingParams())
    return [Generation(_Served(), request, metrics, 0.0, s) for s in streams]  # type: ignore[arg-type]


def test_one_failing_generation_aborts_its_siblings() -> None:
    streams = [_Stream(endless=True), _Stream(3, error=EngineError("boom")), _Stream(endless=True)]
    with pytest.raises(EngineError):
        asyncio.run(run_all(_generations(streams)))
    assert all(s.closed for s in streams)


def test_a_cancelled_batch_aborts_every_generation() -> None:
    streams = [_Stream(endless=True) for _ in range(3)]

    async def leave() -> None:
        task = asyncio.ensure_future(run_all(_generations(streams)))
        for _ in range(10):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(leave())
    assert all(s.closed for s in streams)


def test_a_finished_batch_has_every_result() -> None:
    streams = [_Stream(2), _Stream(5)]
    generations = _generations(streams)
    asyncio.run(run_all(generations))
    assert ["".join(g.choices[0].text) for g in generations] == ["xx", "xxxxx"]


def test_closing_a_stream_body_that_never_started_aborts_its_generations() -> None:
    streams = [_Stream(endless=True) for _ in range(2)]

    async def body() -> AsyncIterator[bytes]:
        yield b"never reached"

    async def close_unstarted() -> None:
        await OwnedStream(body(), _generations(streams)).aclose()

    asyncio.run(close_unstarted())
    assert all(s.closed for s in streams)


# -- serving: per-token metrics reach prometheus in batches ---------------------------------------


def test_token_metrics_are_reported_every_sixteen_tokens_and_in_full_at_the_end() -> None:
    (generation,) = _generations([_Stream(40)])
    registry = generation.metrics.registry

    def tokens() -> float:
        return registry.get_sample_value("pampero_generation_tokens_total", {"model": "fake"}) or 0

    def gaps() -> float:
        name = "pampero_inter_token_latency_seconds_count"
        return registry.get_sample_value(name, {"model": "fake"}) or 0

    seen: list[tuple[int, float, float]] = []

    async def consume() -> None:
        async for _ in generation.events():
            seen.append((generation.usage.completion_tokens, tokens(), gaps()))

    asyncio.run(consume())
    assert seen[9] == (10, 0, 0)  # not yet: fewer than 16 gaps since the first token
    assert seen[16] == (17, 17, 16)  # the first batch: 17 tokens, 16 gaps between them
    assert seen[20] == (21, 17, 16)
    assert (tokens(), gaps()) == (40, 39)  # the rest when the stream ends
