"""Compile constraint specs for one model: in killable workers, under a deadline, cached.

``compile`` never blocks the event loop. The backends that can express the spec are chosen
without compiling (``ConstraintBackend.unsupported``: kinds, keywords, regex features), so a
spec none can express is a 400 at once. For each backend ``auto`` then tries (or the one named),
the spec is validated, compiled and its first tokens timed against the decode thread's
``MaskBudget`` in a worker process, under what is left of the deadline; the artifact is loaded
in the serving process on a thread, and the result is cached. The deadline is CPU time of the
worker (a busy machine does not make a compile fail), with a wall-clock backstop
(``backstop`` × the deadline) past which the caller gets a 429 to retry. On either the worker
is killed, a fresh one is started in the background, and a CPU overrun is a 400. A worker that
crashes (a native stack overflow on a deeply nested spec) is also a 400.

What crosses from the worker, per backend: xgrammar, its serialised compiled grammar; outlines,
the pickled token automaton; guidance, the grammar text (it compiles lazily, so the worker
proves the spec by building a matcher and its first mask, and the serving process builds its
template matcher again); lm-format-enforcer, nothing (its parsers are rebuilt in-process, a cost
the worker proved bounded).

Results, including refusals (a malformed spec, one a backend cannot express), are cached in an
LRU bounded by entries and bytes, keyed by backend and spec; timeouts and crashes are not, as a
loaded machine could cause them. Concurrent compiles of one spec share one build. Given a
``DiskCache``, compiled artifacts are also kept on disk across restarts (``disk_cache``).

Example::

    compiler = ConstraintCompiler(vocabulary_from_tokenizer(engine.tokenizer))
    compiled = await compiler.compile(spec)            # raises InvalidRequestError (400)
    params.constraint = compiled                       # each sequence: compiled.new_matcher()
    await compiler.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import orjson

from pampero.constraints.base import (
    CompiledConstraint,
    ConstraintBackend,
    ConstraintSpec,
    ConstraintVocabulary,
)
from pampero.constraints.cache import BoundedLRU
from pampero.constraints.disk_cache import DiskCache, code_version, vocabulary_hash
from pampero.constraints.distinct_keys import KeyIndex
from pampero.constraints.literal_loops import LoopIndex
from pampero.constraints.postcheck import PostCheck
from pampero.constraints.probe import probe
from pampero.constraints.registry import BackendRegistry
from pampero.constraints.schema_depth import DEFAULT_DEPTH, bounded_spec
from pampero.constraints.schema_relax import LEVELS, relax
from pampero.constraints.schema_rewrite import rewrite_spec
from pampero.constraints.validation import DEFAULT_LIMITS, Limits, validate
from pampero.constraints.worker import (
    CompileWorker,
    WorkerDied,
    WorkerOverran,
    start_method_context,
)
from pampero.errors import (
    BeyondLimits,
    EngineError,
    InvalidRequestError,
    Overloaded,
    UnsupportedParameter,
)
from pampero.sampling.constraint import MaskBudget

_PREPARE_TIMEOUT = 180.0  # importing a library and adapting a vocabulary, outside the deadline
BACKSTOP = 6.0  # the wall-clock bound on one compile call, in deadlines
PROBE_CPU = 1.0  # CPU seconds the mask probe may take: a mask that long is over any budget
_ERROR_BYTES = 256
_JSON_KINDS = ("json_schema", "json_object")  # outputs whose keys are kept distinct
# Validity alone, whatever the size: what a schema is checked against before it is relaxed.
_UNBOUNDED = Limits(max_repetition=1 << 62, max_nesting=1 << 30, max_ref_depth=1 << 30)


@dataclass(frozen=True)
class _Outcome:
    """A cached result: a compiled constraint, or the 400 the spec earns."""

    compiled: CompiledConstraint | None
    error: type[InvalidRequestError] = InvalidRequestError
    message: str = ""
    param: str | None = None  # None: the param of whichever spec asks

    def unwrap(self, spec: ConstraintSpec) -> CompiledConstraint:
        if self.compiled is not None:
            return self.compiled
        raise self.error(self.message, param=self.param or spec.param)


def _refusal(exc: InvalidRequestError, spec: ConstraintSpec) -> _Outcome:
    param = None if exc.param == spec.param else exc.param
    return _Outcome(None, type(exc), exc.message, param)


class _Budget:
    """The compile time a ``compile`` call has left, shared by the backends ``auto`` tries:
    CPU seconds of the worker, and a wall-clock backstop. Only compiling and probing count;
    waiting for a worker and adapting a vocabulary (``prepare``) do not."""

    def __init__(self, cpu_seconds: float, wall_seconds: float) -> None:
        self.left = cpu_seconds
        self.wall = wall_seconds

    def wall_left(self) -> float:
        return self.wall

    async def spend(self, worker: CompileWorker, call: Any) -> Any:
        """Await ``call`` (a worker call on the executor), charging the CPU time the worker
        reports and the wall time it took."""
        worker.last_cpu = 0.0
        started = time.monotonic()
        try:
            return await call
        finally:
            self.left -= worker.last_cpu
            self.wall -= time.monotonic() - started


class ConstraintCompiler:
    """Compiles ``ConstraintSpec``s for one vocabulary. Use from one event loop."""

    def __init__(
        self,
        vocabulary: ConstraintVocabulary,
        *,
        deadline: float = 5.0,
        cache_entries: int = 256,
        cache_bytes: int = 512 * 1024 * 1024,
        workers: int = 1,
        registry: BackendRegistry | None = None,
        limits: Limits = DEFAULT_LIMITS,
        mask_budget: MaskBudget | None = MaskBudget(),  # noqa: B008 - frozen, shared
        backstop: float = BACKSTOP,
        disk_cache: DiskCache | None = None,
        max_recursion: int = DEFAULT_DEPTH,
    ) -> None:
        if deadline <= 0 or workers < 1 or backstop < 1:
            raise ValueError("a compiler needs a positive deadline and at least one worker")
        self.vocabulary = vocabulary
        self.deadline = deadline
        self.backstop = backstop
        self.mask_budget = mask_budget
        self.registry = registry if registry is not None else BackendRegistry()
        self.limits = limits
        self.disk_cache = disk_cache
        self.max_recursion = max_recursion  # levels a recursive schema definition may nest
        self._vocabulary_hash: str | None = None
        self._json: tuple[KeyIndex, LoopIndex] | None = None
        self.cache: BoundedLRU[tuple[Any, ...], _Outcome] = BoundedLRU(
            max_entries=cache_entries, max_bytes=cache_bytes
        )
        self._max_workers = workers
        self._context = start_method_context()
        self._executor = ThreadPoolExecutor(workers + 1, thread_name_prefix="pampero-constraints")
        self._inflight: dict[tuple[Any, ...], asyncio.Future[_Outcome]] = {}
        self._idle: asyncio.Queue[CompileWorker] | None = None
        self._live: set[CompileWorker] = set()
        self._starting = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- public ---------------------------------------------------------------------------------

    async def compile(self, spec: ConstraintSpec) -> CompiledConstraint:
        """The compiled ``spec``; raises ``InvalidRequestError`` / ``UnsupportedParameter``."""
        if self._closed:
            raise EngineError("the constraint compiler is closed")
        if spec.kind == "json_schema" and not spec.strict:
            return await self.compile_around_schema(spec, lambda text: replace(spec, value=text))
        return await self._first_compiled(self._rewritten(spec), self._budget())

    async def compile_around_schema(
        self, schema: ConstraintSpec, build: Callable[[str], ConstraintSpec]
    ) -> CompiledConstraint:
        """``build(schema.value)`` compiled: a constraint made around a JSON schema (the schema
        itself, or a grammar that embeds it). If no backend compiles it and ``schema`` is not
        strict, the schema is relaxed (``schema_relax``), step by step, into ``build`` until one
        compiles; the result then carries the check of the full schema (``check_after``). A
        schema that is itself invalid stays that 400."""
        if self._closed:
            raise EngineError("the constraint compiler is closed")
        schema = self._rewritten(schema)
        budget = self._budget()
        try:
            return await self._first_compiled(rewrite_spec(build(schema.value)), budget)
        except InvalidRequestError as exc:
            if schema.strict or schema.kind != "json_schema":
                raise
            await self._check_valid(schema)  # an invalid schema is its own 400
            refused = exc
        relaxed = await self._relaxed(schema, build, budget)
        if relaxed is None:
            raise refused
        return relaxed

    def _rewritten(self, spec: ConstraintSpec) -> ConstraintSpec:
        """``spec`` with the exact rewrites, then its recursion bounded (``schema_depth``)."""
        return bounded_spec(rewrite_spec(spec), self.max_recursion)

    def _budget(self) -> _Budget:
        return _Budget(self.deadline, self.deadline * self.backstop)

    async def _check_valid(self, schema: ConstraintSpec) -> None:
        """Raise the 400 of a malformed ``schema``, whatever its size (a schema too large to
        check whole passes: relaxing it is the best that can be done)."""
        with contextlib.suppress(BeyondLimits):
            await asyncio.to_thread(validate, replace(schema, whitespace_pattern=None), _UNBOUNDED)

    async def _relaxed(
        self, schema: ConstraintSpec, build: Callable[[str], ConstraintSpec], budget: _Budget
    ) -> CompiledConstraint | None:
        """The first relaxation of a non-strict ``schema`` some backend compiles into ``build``,
        carrying the check of the full schema; None if even the loosest is refused. The
        relaxations get one fresh deadline between them if the full schema spent it, and the
        last (the top-level type alone, milliseconds) one of its own."""
        document = json.loads(schema.value)
        expressible = self._expressible(build(schema.value).backend)
        steps: list[tuple[int, Callable[[str], bool] | None]] = [(n, None) for n in LEVELS]
        steps.insert(LEVELS.index(2), (2, expressible))
        refreshed = False
        tried = set()
        for level, keep in steps:
            relaxed = relax(document, level, self.limits, keep)
            text = orjson.dumps(relaxed.schema).decode()
            if not relaxed.dropped or text in tried:
                continue
            tried.add(text)
            if budget.left <= 0 and (not refreshed or level == LEVELS[-1]):
                budget, refreshed = self._budget(), True
            loose = rewrite_spec(build(text))
            try:
                compiled = await self._first_compiled(loose, budget)
            except InvalidRequestError:
                continue
            return replace(compiled, check_after=PostCheck.of(schema.value, relaxed.dropped))
        return None

    def _expressible(self, backend: str) -> Callable[[str], bool]:
        """Whether some backend ``backend`` stands for can take a regex, by its features alone
        (``ConstraintBackend.unsupported``; nothing is compiled)."""

        def keep(pattern: str) -> bool:
            probe = ConstraintSpec(kind="regex", value=pattern, param="pattern", backend=backend)
            try:
                self.registry.candidates(probe)
            except InvalidRequestError:
                return False
            return True

        return keep

    async def _first_compiled(self, spec: ConstraintSpec, budget: _Budget) -> CompiledConstraint:
        """``spec`` compiled by the first candidate backend that can."""
        names = self.registry.candidates(spec)
        refusals: list[UnsupportedParameter] = []
        for name in names:
            try:
                return await self._compiled(name, spec, budget)
            except BeyondLimits:
                raise  # the spec's size, or the deadline all backends share: no use going on
            except UnsupportedParameter as exc:
                refusals.append(exc)
        if len(refusals) == 1:
            raise refusals[0]
        raise UnsupportedParameter(
            "no constraint backend could compile this: "
            + "; ".join(exc.message for exc in refusals),
            param=spec.param,
        )

    async def warm_up(self, names: Iterable[str] | None = None) -> None:
        """Start every worker and adapt the vocabulary for ``names`` (default: all available
        backends), in the workers and in this process, so first requests pay no set-up."""
        chosen = list(names) if names is not None else self.registry.available()
        loop = asyncio.get_running_loop()
        await self._json_indexes()
        for name in chosen:
            await loop.run_in_executor(
                self._executor, self.registry.backend(name).prepare, self.vocabulary
            )
        workers = [await self._acquire() for _ in range(self._max_workers)]
        try:
            for worker in workers:
                for name in chosen:
                    await loop.run_in_executor(
                        self._executor, worker.prepare, name, _PREPARE_TIMEOUT
                    )
        finally:
            for worker in workers:
                self._release(worker)

    def worker_pids(self) -> list[int]:
        """Process ids of the live compile workers."""
        return [w.pid for w in self._live if w.pid is not None]

    async def aclose(self) -> None:
        """Stop every worker and thread this compiler started."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self.close()

    def close(self) -> None:
        self._closed = True
        for worker in list(self._live):
            worker.stop()
        self._live.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.cache.clear()

    async def __aenter__(self) -> ConstraintCompiler:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- one backend ----------------------------------------------------------------------------

    async def _compiled(
        self, name: str, spec: ConstraintSpec, budget: _Budget
    ) -> CompiledConstraint:
        key = (name, self.vocabulary.model_key, *spec.key())
        cached = self.cache.get(key)
        if cached is not None:
            return cached.unwrap(spec)
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            self._spawn(self._build(name, spec, key, budget, future))
        # Shielded: one caller giving up does not cancel the build the others wait for.
        outcome = await asyncio.shield(future)
        return outcome.unwrap(spec)

    async def _build(
        self,
        name: str,
        spec: ConstraintSpec,
        key: tuple[Any, ...],
        budget: _Budget,
        future: asyncio.Future[_Outcome],
    ) -> None:
        try:
            outcome, cache_size = await self._outcome(name, spec, budget)
            if cache_size is not None:
                self.cache.put(key, outcome, cache_size)
            future.set_result(outcome)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._inflight.pop(key, None)

    async def _outcome(
        self, name: str, spec: ConstraintSpec, budget: _Budget
    ) -> tuple[_Outcome, int | None]:
        """The outcome and its cache size (None: not to be cached)."""
        loop = asyncio.get_running_loop()
        backend = self.registry.backend(name)
        compiled = await self._from_disk(name, spec)
        try:
            if compiled is None:
                artifact = await self._in_worker(name, spec, budget)
                compiled = await loop.run_in_executor(
                    self._executor, backend.load, artifact, spec, self.vocabulary
                )
                self._to_disk(name, spec, artifact)
        except _Transient as exc:
            return _Outcome(None, BeyondLimits, exc.message, spec.param), None
        except InvalidRequestError as exc:
            return _refusal(exc, spec), _ERROR_BYTES + len(exc.message)
        size = backend.footprint(compiled)
        keys, loops = await self._json_indexes() if spec.kind in _JSON_KINDS else (None, None)
        compiled_constraint = CompiledConstraint(
            name,
            spec,
            size,
            compiled,
            backend,
            mask_budget=self.mask_budget,
            key_index=keys,
            loop_index=loops,
        )
        return _Outcome(compiled_constraint), size

    async def _json_indexes(self) -> tuple[KeyIndex, LoopIndex]:
        """The vocabulary's ``KeyIndex`` and ``LoopIndex`` (built once, on a thread: passes over
        every token)."""
        if self._json is None:
            loop = asyncio.get_running_loop()
            keys = await loop.run_in_executor(self._executor, KeyIndex.of, self.vocabulary)
            loops = await loop.run_in_executor(self._executor, LoopIndex.of, self.vocabulary)
            self._json = (keys, loops)
        return self._json

    # -- across restarts --------------------------------------------------------------------------

    def _disk_key(self, name: str, spec: ConstraintSpec) -> str | None:
        if self.disk_cache is None:
            return None
        if self._vocabulary_hash is None:
            self._vocabulary_hash = vocabulary_hash(self.vocabulary)
        entry = self.registry.entries[name]
        return self.disk_cache.key(
            name,
            code_version(entry.requires, entry.target),
            self._vocabulary_hash,
            spec.key(),
            self.limits,
            self.mask_budget,
        )

    async def _from_disk(self, name: str, spec: ConstraintSpec) -> Any | None:
        """``spec`` as ``name`` compiled it before (this process or an earlier one), loaded;
        None if it is not on disk or no longer loads."""
        key = self._disk_key(name, spec)
        if key is None or self.disk_cache is None:
            return None
        loop = asyncio.get_running_loop()
        artifact = await loop.run_in_executor(self._executor, self.disk_cache.get, key)
        if artifact is None:
            return None
        backend = self.registry.backend(name)
        try:
            await loop.run_in_executor(self._executor, backend.prepare, self.vocabulary)
            return await loop.run_in_executor(
                self._executor, backend.load, artifact, spec, self.vocabulary
            )
        except Exception:  # an entry this library cannot read: compile it again
            return None

    def _to_disk(self, name: str, spec: ConstraintSpec, artifact: Any) -> None:
        key = self._disk_key(name, spec)
        if key is not None and self.disk_cache is not None:
            self._spawn(
                asyncio.get_running_loop().run_in_executor(
                    self._executor, self.disk_cache.put, key, artifact
                )
            )

    async def _in_worker(self, name: str, spec: ConstraintSpec, budget: _Budget) -> Any:
        loop = asyncio.get_running_loop()
        worker = await self._acquire()
        try:
            await loop.run_in_executor(self._executor, worker.prepare, name, _PREPARE_TIMEOUT)
            if budget.left <= 0 or budget.wall_left() <= 0:  # earlier backends used it all
                raise WorkerOverran(cpu=budget.left <= 0)
            artifact = await budget.spend(
                worker,
                loop.run_in_executor(
                    self._executor, worker.compile, name, spec, budget.left, budget.wall_left()
                ),
            )
            if self.mask_budget is not None:
                await self._probe(worker, name, spec, budget)
            return artifact
        except WorkerOverran as exc:
            if not worker.process.is_alive():
                self._discard(worker)
            if not exc.cpu:
                raise Overloaded(
                    "the server is too busy to compile this constraint now "
                    f"({self.deadline * self.backstop:g} s passed); retry",
                    retry_after=max(1, math.ceil(self.deadline)),
                ) from None
            raise _Transient(
                f"the constraint took more than {self.deadline:g} s of CPU time to compile"
            ) from None
        except WorkerDied:
            self._discard(worker)
            raise _Transient(
                "compiling the constraint crashed the compiler (is it nested too deeply?)"
            ) from None
        finally:
            if worker in self._live:
                self._release(worker)

    async def _probe(
        self, worker: CompileWorker, name: str, spec: ConstraintSpec, budget: _Budget
    ) -> None:
        """Time the constraint's first tokens in ``worker`` (which just compiled it). A probe
        that runs out of its own CPU allowance found a mask over any budget: a refusal of this
        backend (``auto`` moves on), unless the compile's deadline was what ran out."""
        limit = min(budget.left, PROBE_CPU)
        if limit <= 0:
            raise WorkerOverran(cpu=True)
        try:
            await budget.spend(
                worker,
                asyncio.get_running_loop().run_in_executor(
                    self._executor, worker.probe, name, spec, limit, budget.wall_left()
                ),
            )
        except WorkerOverran as exc:
            if not exc.cpu or limit < PROBE_CPU:
                raise
            self._discard(worker)
            raise UnsupportedParameter(
                f"{name}'s token masks for this constraint cost more than {PROBE_CPU:g} s of "
                "CPU time each, too much to serve beside other requests",
                param=spec.param,
            ) from None

    # -- workers --------------------------------------------------------------------------------

    async def _acquire(self) -> CompileWorker:
        if self._idle is None:
            self._idle = asyncio.Queue()
        if self._idle.empty() and len(self._live) + self._starting < self._max_workers:
            return await self._start_worker()
        return await self._idle.get()

    def _release(self, worker: CompileWorker) -> None:
        if self._idle is not None and not self._closed:
            self._idle.put_nowait(worker)

    async def _start_worker(self, prepare: Iterable[str] = ()) -> CompileWorker:
        self._starting += 1
        try:
            worker = await asyncio.get_running_loop().run_in_executor(
                self._executor,
                CompileWorker,
                self._context,
                self.vocabulary,
                self.registry.entries,
                self.limits,
                self.mask_budget,
            )
            self._live.add(worker)
        finally:
            self._starting -= 1
        for name in prepare:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, worker.prepare, name, _PREPARE_TIMEOUT
            )
        return worker

    def _discard(self, worker: CompileWorker) -> None:
        """Forget a killed worker and start its replacement in the background."""
        self._live.discard(worker)
        if not self._closed:
            self._spawn(self._replace(sorted(worker.prepared)))

    async def _replace(self, prepared: list[str]) -> None:
        worker = await self._start_worker(prepared)
        if self._closed:
            worker.stop()
            self._live.discard(worker)
        else:
            self._release(worker)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Transient(Exception):
    """A failure that says nothing certain about the spec (timeout, crash): not cached."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def compile_in_process(
    backend: ConstraintBackend,
    spec: ConstraintSpec,
    vocabulary: ConstraintVocabulary,
    limits: Limits = DEFAULT_LIMITS,
    mask_budget: MaskBudget | None = None,
) -> CompiledConstraint:
    """Validate, compile and load ``spec`` right here, with no deadline (and with the mask
    probe only given a ``mask_budget``): for tests, benchmarks and tools, never for
    requests."""
    spec = rewrite_spec(spec)
    validate(spec, limits)
    artifact = backend.compile(spec, vocabulary)
    compiled = backend.load(artifact, spec, vocabulary)
    if mask_budget is not None:
        probe(backend, compiled, spec, vocabulary, mask_budget)
    return CompiledConstraint(
        backend.name,
        spec,
        backend.footprint(compiled),
        compiled,
        backend,
        mask_budget=mask_budget,
    )
