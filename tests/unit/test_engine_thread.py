"""The model is loaded on the thread that decodes with it (llama.cpp built with OpenMP keeps a
thread team per calling thread; a load and warm-up elsewhere left a second team behind and
halved two-thread decode speed), and a load that fails is an error from ``start``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from pampero.engines.batched import BatchedEngine, LoadedModel
from pampero.engines.scheduler import SchedulerConfig
from pampero.inference import GenerationRequest, SamplingParams
from tests.fake_engine import create
from tests.fakes import FakeRunner


class _Options:
    model_id = "fake"
    n_ctx = 128
    n_batch = 32
    max_seqs = 2
    prefill_chunk = 16
    max_queue = 4


def _engine_recording_threads(seen: dict[str, str]) -> BatchedEngine:
    engine: BatchedEngine = create(_Options())  # type: ignore[arg-type,assignment]
    load = engine._load
    decode = FakeRunner.decode

    def recording_load() -> LoadedModel:
        seen["load"] = threading.current_thread().name
        loaded = load()

        def recording_decode(*args: Any) -> Any:
            seen["decode"] = threading.current_thread().name
            return decode(loaded.runner, *args)  # type: ignore[arg-type]

        loaded.runner.decode = recording_decode  # type: ignore[method-assign]
        return loaded

    engine._load = recording_load
    return engine


def test_the_model_is_loaded_on_the_thread_that_decodes() -> None:
    seen: dict[str, str] = {}

    async def run() -> None:
        engine = _engine_recording_threads(seen)
        await engine.start()
        request = GenerationRequest(
            request_id="r", prompt_tokens=[104, 105], sampling=SamplingParams(max_tokens=3)
        )
        async for _ in engine.generate(request):
            pass
        await engine.stop()

    asyncio.run(run())
    assert seen["load"] == seen["decode"] == "engine:fake"


def test_a_failed_load_is_raised_by_start_and_leaves_no_thread() -> None:
    def load() -> LoadedModel:
        raise OSError("no such model file")

    async def run() -> BatchedEngine:
        engine = BatchedEngine(
            "broken", load, SchedulerConfig(max_seqs=1, prefill_chunk=16, max_queue=1)
        )
        with pytest.raises(OSError, match="no such model file"):
            await engine.start()
        return engine

    engine = asyncio.run(run())
    assert engine._thread is not None
    engine._thread.join(5)
    assert not engine.is_alive()
