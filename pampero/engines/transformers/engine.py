"""The ``transformers`` engine: Hugging Face models from a local directory, one request at a time.

Concurrency: one generation thread runs one request at a time, and a request's ``n`` choices
one after another (each from its own prefill, with its own seeded sampler). Other requests wait
in a queue, lowest ``priority`` value first, then by arrival; when ``max_queue`` requests are
already waiting, ``generate`` raises ``Overloaded``. There is no continuous batching here: this
engine is for the models llama.cpp cannot run, not for throughput.

The event loop never waits on the model: ``generate`` queues the request at once and returns an
async iterator fed by the generation thread through ``loop.call_soon_threadsafe``. Closing the
iterator early cancels the request: a waiting one is dropped, a running one stops within one
decoding step.

Images: ``GenerationRequest.images`` fill the prompt's ``IMAGE_PLACEHOLDER_ID`` slots, and
``EngineEvent.prompt_tokens`` counts the prompt with the images' tokens. A prompt that is too
long only once its images are expanded fails with ``ContextLengthExceeded`` from the iterator,
before any event.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pampero.engines.base import EngineOptions
from pampero.engines.choice import ChoiceOutput, ChoiceVocabulary
from pampero.engines.stream import EventStream, Item
from pampero.engines.transformers.generation import prompt_logprobs, run_choice
from pampero.engines.transformers.inputs import build_inputs
from pampero.engines.transformers.loader import LoadedModel, load_model
from pampero.errors import (
    ContextLengthExceeded,
    EngineError,
    EngineNotReady,
    InvalidRequestError,
    Overloaded,
    PamperoError,
    UnsupportedParameter,
)
from pampero.inference import (
    IMAGE_PLACEHOLDER_ID,
    Capabilities,
    EngineEvent,
    EngineStats,
    GenerationRequest,
    SequenceDelta,
    Tokenizer,
)

log = logging.getLogger(__name__)


def _deliverer(loop: asyncio.AbstractEventLoop, stream: EventStream) -> Callable[[Item], None]:
    def deliver(item: Item) -> None:  # from the generation thread
        if not loop.is_closed():
            loop.call_soon_threadsafe(stream.put, item)

    return deliver


@dataclass
class _Job:
    request: GenerationRequest
    deliver: Callable[[Item], None]
    order: int
    cancelled: bool = False
    started: bool = False
    n_tokens: int = 0  # prompt plus output so far, for stats

    def sort_key(self) -> tuple[int, int]:
        return (self.request.priority, self.order)

    def __lt__(self, other: _Job) -> bool:
        return self.sort_key() < other.sort_key()


@dataclass
class _Queue:
    """The waiting jobs and the running one; every field is guarded by ``ready``'s lock."""

    ready: threading.Condition = field(default_factory=threading.Condition)
    waiting: list[_Job] = field(default_factory=list)
    running: _Job | None = None
    stopping: bool = False


class TransformersEngine:
    """Implements ``pampero.engines.base.Engine``; see the module docstring."""

    def __init__(self, model_id: str, load: Callable[[], LoadedModel], *, max_queue: int) -> None:
        self.model_id = model_id
        self._load = load
        self._max_queue = max_queue
        self._loaded: LoadedModel | None = None
        self._queue = _Queue()
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        return self._model().tokenizer

    @property
    def capabilities(self) -> Capabilities:
        loaded = self._model()
        template = loaded.chat_template or ""
        return Capabilities(
            context_length=loaded.context_length,
            supports_images=loaded.supports_images,
            supports_tools="tools" in template,
            supports_beam_search=False,
            supports_speculative=False,
        )

    @property
    def chat_template(self) -> str | None:
        return self._model().chat_template

    def _model(self) -> LoadedModel:
        if self._loaded is None:
            raise EngineNotReady(f"model {self.model_id} is still loading")
        return self._loaded

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loaded = await asyncio.to_thread(self._load)
        self._thread = threading.Thread(
            target=self._run, name=f"engine:{self.model_id}", daemon=True
        )
        self._thread.start()

    async def halt(self) -> None:
        with self._queue.ready:
            self._queue.stopping = True
            self._queue.ready.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)

    async def stop(self) -> None:
        await self.halt()
        self._loaded = None

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._queue.stopping

    def stats(self) -> EngineStats:
        queue = self._queue
        with queue.ready:
            running = queue.running
            waiting = sum(1 for job in queue.waiting if not job.cancelled)
        capacity = self._loaded.context_length if self._loaded is not None else 0
        return EngineStats(
            running=1 if running is not None else 0,
            waiting=waiting,
            kv_used_tokens=running.n_tokens if running is not None else 0,
            kv_capacity_tokens=capacity,
        )

    def generate(self, request: GenerationRequest) -> AsyncIterator[EngineEvent]:
        return self.generate_batch([request])[0]

    def generate_batch(
        self, requests: Sequence[GenerationRequest]
    ) -> list[AsyncIterator[EngineEvent]]:
        if self._loaded is None or self._loop is None or not self.is_alive():
            raise EngineNotReady(f"model {self.model_id} is not ready")
        for request in requests:
            self._validate(request)
        if len(requests) > self._max_queue + 1:
            raise InvalidRequestError(
                f"a batch of {len(requests)} prompts is more than this server can hold at once "
                f"({self._max_queue + 1}: one running plus --max-queue); send fewer prompts",
                param="prompt",
            )
        loop = self._loop
        streams = [EventStream() for _ in requests]
        jobs = [
            _Job(request=request, deliver=_deliverer(loop, stream), order=next(self._order))
            for request, stream in zip(requests, streams, strict=True)
        ]
        queue = self._queue
        with queue.ready:
            waiting = sum(1 for j in queue.waiting if not j.cancelled)
            idle = 0 if queue.running is not None else 1
            if waiting + len(jobs) - idle > self._max_queue:
                raise Overloaded(
                    f"the server is at capacity ({waiting} requests waiting); retry shortly"
                )
            for job in jobs:
                heapq.heappush(queue.waiting, job)
            queue.ready.notify()
        for stream, job in zip(streams, jobs, strict=True):
            stream.bind(functools.partial(self._cancel, job))
        return list(streams)

    def _validate(self, request: GenerationRequest) -> None:
        loaded = self._model()
        prompt = request.prompt_tokens
        if not prompt:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        if request.sampling.use_beam_search:
            raise UnsupportedParameter(
                "the transformers engine does not do beam search", param="use_beam_search"
            )
        if request.images and not loaded.supports_images:
            raise InvalidRequestError(
                f"Model {self.model_id} does not accept image input.", param="messages"
            )
        n_text = sum(1 for t in prompt if t != IMAGE_PLACEHOLDER_ID)
        if len(prompt) - n_text != len(request.images):
            raise InvalidRequestError(
                f"the prompt has {len(prompt) - n_text} image places but "
                f"{len(request.images)} images were given",
                param="messages",
            )
        _check_context(n_text, loaded.context_length)

    def _cancel(self, job: _Job) -> None:
        with self._queue.ready:
            job.cancelled = True

    # -- the generation thread ---------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        try:
            while (job := self._next_job()) is not None:
                end: Item = None
                try:
                    self._serve(job)
                except PamperoError as exc:
                    end = exc
                except Exception as exc:  # the engine must outlive one bad request
                    log.exception("generation failed for %s", job.request.request_id)
                    end = EngineError(f"generation failed: {exc}")
                finally:
                    with queue.ready:
                        queue.running = None
                job.deliver(end)
        finally:
            with queue.ready:
                left, queue.waiting = queue.waiting, []
            for job in left:
                job.deliver(EngineNotReady(f"model {self.model_id} is shutting down"))

    def _next_job(self) -> _Job | None:
        queue = self._queue
        with queue.ready:
            while True:
                if queue.stopping:
                    return None
                while queue.waiting and queue.waiting[0].cancelled:
                    heapq.heappop(queue.waiting).deliver(None)
                if queue.waiting:
                    job = heapq.heappop(queue.waiting)
                    queue.running = job
                    return job
                queue.ready.wait()

    def _serve(self, job: _Job) -> None:
        loaded = self._model()
        request = job.request
        inputs = build_inputs(loaded, request.prompt_tokens, request.images)
        _check_context(inputs.n_tokens, loaded.context_length)
        params = request.sampling
        first_logprobs = (
            prompt_logprobs(loaded, inputs, params.prompt_logprobs)
            if params.prompt_logprobs is not None
            else None
        )
        tokenizer = loaded.tokenizer
        vocab = ChoiceVocabulary(tokenizer.pieces, tokenizer.special_ids, tokenizer.eog_token_ids)
        sent_first = False

        def emit(delta: SequenceDelta) -> None:
            nonlocal sent_first
            job.n_tokens += len(delta.token_ids)
            job.deliver(
                EngineEvent(
                    deltas=[delta],
                    prompt_tokens=inputs.n_tokens,
                    prompt_logprobs=None if sent_first else first_logprobs,
                )
            )
            sent_first = True

        for index in range(params.n):
            if self._stopped(job):
                break
            job.n_tokens = inputs.n_tokens
            choice = ChoiceOutput.start(
                params,
                inputs.token_ids,
                vocab,
                vocab_size=tokenizer.vocab_size,
                n_ctx=loaded.context_length,
                index=index,
            )
            run_choice(loaded, inputs, choice, cancelled=lambda: self._stopped(job), emit=emit)
        if self._queue.stopping and not job.cancelled:
            raise EngineNotReady(f"model {self.model_id} is shutting down")

    def _stopped(self, job: _Job) -> bool:
        return job.cancelled or self._queue.stopping


def _check_context(n_prompt: int, n_ctx: int) -> None:
    if n_prompt >= n_ctx:
        raise ContextLengthExceeded(
            f"the prompt has {n_prompt} tokens; this model's context is {n_ctx} tokens and at "
            "least one must be left to generate",
            param="messages",
        )


def create(options: EngineOptions) -> TransformersEngine:
    """The registry's factory; torch and transformers are imported when the model loads."""
    path = Path(options.path).expanduser()
    if options.mmproj is not None:
        raise InvalidRequestError(
            f"model {options.model_id}: mmproj is for llama.cpp; a transformers model directory "
            "holds its own vision tower",
            param="mmproj",
        )

    def load() -> LoadedModel:
        return load_model(path, n_ctx=options.n_ctx, threads=options.threads)

    return TransformersEngine(options.model_id, load, max_queue=options.max_queue)
