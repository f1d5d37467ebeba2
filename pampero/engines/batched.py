"""An ``Engine`` over any batch runner: the scheduler on its own thread, bridged to asyncio.

The event loop never waits on the model. ``generate`` submits at once (so ``Overloaded`` and
context errors surface before a response starts) and returns an async iterator fed by the engine
thread through ``loop.call_soon_threadsafe``: one call per step carries every request's events.
Closing the iterator early (a client went away) aborts the request within one step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pampero.engines.drafter import ModelDrafter
from pampero.engines.scheduler import (
    BatchRunner,
    Emission,
    Scheduler,
    SchedulerConfig,
    Vocabulary,
)
from pampero.engines.stream import EventStream
from pampero.errors import EngineNotReady
from pampero.inference import Capabilities, EngineEvent, EngineStats, GenerationRequest, Tokenizer

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """What a runner factory returns: the runner and what serving needs to know about it."""

    runner: BatchRunner
    tokenizer: Tokenizer
    vocabulary: Vocabulary
    capabilities: Capabilities
    chat_template: str | None
    close: Callable[[], None]
    drafter: ModelDrafter | None = None  # the draft model, when the model has one


class BatchedEngine:
    """Implements ``pampero.engines.base.Engine``."""

    def __init__(
        self,
        model_id: str,
        load: Callable[[], LoadedModel],
        config: SchedulerConfig,
    ) -> None:
        self.model_id = model_id
        self._load = load
        self._config = config
        self._loaded: LoadedModel | None = None
        self._scheduler: Scheduler | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # The attributes serving reads, valid once started.
    @property
    def tokenizer(self) -> Tokenizer:
        return self._model().tokenizer

    @property
    def capabilities(self) -> Capabilities:
        return self._model().capabilities

    @property
    def chat_template(self) -> str | None:
        return self._model().chat_template

    def _model(self) -> LoadedModel:
        if self._loaded is None:
            raise EngineNotReady(f"model {self.model_id} is still loading")
        return self._loaded

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        loaded: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(loaded,), name=f"engine:{self.model_id}", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(loaded)

    def _run(self, loaded: concurrent.futures.Future[None]) -> None:
        # The model is loaded (and warmed up) on the thread that will decode with it. llama.cpp
        # built with OpenMP keeps a thread team per calling thread: a warm-up on another thread
        # left a second, idle team behind, more OpenMP threads than cores, so libgomp stopped
        # spinning between steps and two-thread decode ran at one-thread speed (20 -> 33 ms
        # per token for the default model on two cores).
        try:
            self._loaded = self._load()
            self._scheduler = Scheduler(
                self._loaded.runner,
                self._loaded.vocabulary,
                self._config,
                self._emit,
                self._loaded.drafter,
            )
        except BaseException as exc:
            loaded.set_exception(exc)
            return
        loaded.set_result(None)
        try:
            self._scheduler.run(self._stop)
        except BaseException as exc:  # report to every waiting client and in the log, then end
            # Not alive from here on: the clients failed just below may ask /health before this
            # thread has ended (a CI run read 200 there).
            self._stop.set()
            log.exception("engine thread of %s died", self.model_id)
            self._scheduler.fail_all(
                EngineNotReady(
                    f"the engine of model {self.model_id} stopped ({type(exc).__name__}: {exc}); "
                    "the server must be restarted"
                )
            )
        finally:
            self._scheduler.fail_all(EngineNotReady(f"model {self.model_id} is shutting down"))

    def _emit(self, batch: Emission) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(_dispatch, batch)

    async def halt(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)

    async def stop(self) -> None:
        await self.halt()
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def generate(self, request: GenerationRequest) -> AsyncIterator[EngineEvent]:
        return self.generate_batch([request])[0]

    def generate_batch(
        self, requests: Sequence[GenerationRequest]
    ) -> list[AsyncIterator[EngineEvent]]:
        scheduler = self._scheduler
        if scheduler is None or not self.is_alive():
            raise EngineNotReady(f"model {self.model_id} is not ready")
        streams = [EventStream() for _ in requests]
        actives = scheduler.submit_batch(
            [(request, stream.put) for request, stream in zip(requests, streams, strict=True)]
        )
        for stream, active in zip(streams, actives, strict=True):
            stream.bind(functools.partial(scheduler.abort, active))
        return list(streams)

    def stats(self) -> EngineStats:
        if self._scheduler is None:
            return EngineStats(running=0, waiting=0, kv_used_tokens=0, kv_capacity_tokens=0)
        return self._scheduler.stats()


def _dispatch(batch: list[tuple[Callable[[Any], None], Any]]) -> None:
    for sink, item in batch:
        sink(item)
