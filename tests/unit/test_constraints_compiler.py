"""The constraint compiler: worker processes, the deadline, the cache, coalescing, and specs
built to hurt (each a 400 within the deadline, with nothing left running).

Fake backends plug in through the registry, as a plugin would, by ``module:Class`` path; the
compile workers import them from this module.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pampero.assets import ensure_default_model
from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.compiler import BACKSTOP, PROBE_CPU, ConstraintCompiler
from pampero.constraints.registry import BUILTIN, BackendRegistry
from pampero.constraints.vocab import vocabulary_from_tokenizer
from pampero.engines.llamacpp.tokenizer import load_vocab_only
from pampero.errors import InvalidRequestError, Overloaded, UnsupportedParameter
from pampero.settings import default_home

HERE = "tests.unit.test_constraints_compiler"
TINY = ConstraintVocabulary("tiny", (b"a", b"b", b""), frozenset(), frozenset({2}), 3)
MARGIN = 1.5  # seconds past the deadline: killing, reaping, replying


class InstantBackend:
    name = "instant"

    def unsupported(self, spec: ConstraintSpec) -> str | None:
        return None

    def prepare(self, vocabulary: ConstraintVocabulary) -> None:
        return None

    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        return spec.value

    def load(self, artifact: Any, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        return artifact

    def footprint(self, compiled: Any) -> int:
        return 1000

    def matcher(self, compiled: Any) -> Any:
        return EndOnly()


class EndOnly:
    """A matcher over ``TINY`` that allows only its end token (``b""``, id 2)."""

    def __init__(self) -> None:
        self.ended = False

    def fill_allowed(self, mask: Any) -> None:
        mask.fill(False)
        mask[2] = not self.ended

    def accept(self, token_id: int) -> bool:
        self.ended = self.ended or token_id == 2
        return token_id == 2

    def is_terminated(self) -> bool:
        return self.ended


def burn(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


class CostlyMasks:
    """A matcher over ``TINY`` that allows "a" forever, at ``cost`` CPU seconds per mask."""

    def __init__(self, cost: float) -> None:
        self.cost = cost

    def fill_allowed(self, mask: Any) -> None:
        burn(self.cost)
        mask.fill(False)
        mask[0] = True

    def accept(self, token_id: int) -> bool:
        return token_id == 0

    def is_terminated(self) -> bool:
        return False


class SlowMaskBackend(InstantBackend):
    name = "slowmask"

    def matcher(self, compiled: Any) -> Any:
        return CostlyMasks(0.03)  # past the 10 ms typical budget on every token


class EndlessMaskBackend(InstantBackend):
    name = "endlessmask"

    def matcher(self, compiled: Any) -> Any:
        return CostlyMasks(3600.0)


class SleepBackend(InstantBackend):
    """Compiles in wall-clock time without CPU time, as a compile on a busy machine does."""

    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        time.sleep(float(json.loads(spec.value)["const"]))
        return spec.value


class SpinBackend(InstantBackend):
    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        while True:
            pass


class CrashBackend(InstantBackend):
    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        os._exit(70)


def fakes() -> BackendRegistry:
    registry = BackendRegistry(
        {name: BUILTIN[name] for name in ("xgrammar",)}  # a real one beside the fakes
    )
    for name in ("Instant", "Spin", "Crash", "SlowMask", "EndlessMask", "Sleep"):
        registry.register(name.lower(), f"{HERE}:{name}Backend")
    return registry


def costly_first() -> BackendRegistry:
    """``auto`` tries the backends with costly masks before the instant one."""
    registry = BackendRegistry({})
    for name in ("SlowMask", "EndlessMask", "Instant"):
        registry.register(name.lower(), f"{HERE}:{name}Backend")
    return registry


def schema(value: Any, backend: str = "auto", param: str = "guided_json") -> ConstraintSpec:
    text = json.dumps(value) if not isinstance(value, str) else value
    return ConstraintSpec(kind="json_schema", value=text, param=param, backend=backend)


def gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie about to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


@pytest.fixture(scope="module")
def vocabulary() -> Iterator[ConstraintVocabulary]:
    home = Path(os.environ["PAMPERO_HOME"]) if os.environ.get("PAMPERO_HOME") else default_home()
    tokenizer = load_vocab_only(ensure_default_model(home, progress=lambda done, total: None))
    yield vocabulary_from_tokenizer(tokenizer)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- choosing, caching, coalescing --------------------------------------------------------------


def test_auto_chooses_by_spec_and_caches(vocabulary: ConstraintVocabulary) -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(vocabulary) as compiler:
            person = schema({"type": "object", "properties": {"a": {"type": "integer"}}})
            first = await compiler.compile(person)
            assert first.backend == "guidance"
            assert await compiler.compile(person) is first
            # The field a spec came from is no part of its identity.
            again = ConstraintSpec(**{**person.__dict__, "param": "structured_outputs.json"})
            assert await compiler.compile(again) is first
            lark = ConstraintSpec(kind="grammar", value="start: /[ab]+/", param="guided_grammar")
            assert (await compiler.compile(lark)).backend == "guidance"
            gbnf = ConstraintSpec(kind="grammar", value='root ::= "a"+', param="guided_grammar")
            assert (await compiler.compile(gbnf)).backend == "xgrammar"
            named = ConstraintSpec(kind="regex", value="[ab]+", param="p", backend="outlines")
            compiled = await compiler.compile(named)
            assert compiled.backend == "outlines"
            assert not compiled.new_matcher().is_terminated()

    run(scenario())


def test_unknown_backend_lists_the_available_ones(vocabulary: ConstraintVocabulary) -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(vocabulary) as compiler:
            with pytest.raises(InvalidRequestError) as info:
                await compiler.compile(schema({}, backend="turbo"))
            assert info.value.param == "guided_decoding_backend"
            for name in ("auto", "xgrammar", "guidance", "outlines", "lm-format-enforcer"):
                assert name in info.value.message
            with pytest.raises(UnsupportedParameter) as refused:
                await compiler.compile(
                    ConstraintSpec(kind="grammar", value='root ::= "a"', param="g", backend="lmfe")
                )
            assert refused.value.param == "g"

    run(scenario())


def test_concurrent_compiles_of_one_spec_share_one_build() -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(TINY, registry=fakes()) as compiler:
            spec = schema({"type": "string"}, backend="instant")
            results = await asyncio.gather(*(compiler.compile(spec) for _ in range(8)))
            assert all(r is results[0] for r in results)
            assert len(compiler.cache) == 1

    run(scenario())


def test_refusals_are_cached_and_name_the_asking_field(vocabulary: ConstraintVocabulary) -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(vocabulary) as compiler:
            for param in ("guided_regex", "structured_outputs.regex", "guided_regex"):
                with pytest.raises(InvalidRequestError) as info:
                    await compiler.compile(ConstraintSpec(kind="regex", value="(a", param=param))
                assert info.value.param == param
                assert "invalid regex" in info.value.message
            assert len(compiler.cache) == 1

    run(scenario())


def test_ten_thousand_unique_schemas_keep_the_cache_bounded() -> None:
    async def scenario() -> None:
        compiler = ConstraintCompiler(
            TINY, registry=fakes(), cache_entries=64, cache_bytes=50 * 1000
        )
        async with compiler:
            for i in range(10_000):
                await compiler.compile(schema({"const": i}, backend="instant"))
                assert len(compiler.cache) <= 50
                assert compiler.cache.bytes <= 50 * 1000
            assert len(compiler.cache) == 50
            assert not compiler._inflight

    run(scenario())


# -- the deadline and crashes -------------------------------------------------------------------


def test_a_spinning_compile_is_killed_at_the_deadline() -> None:
    threads_before = threading.active_count()

    async def scenario() -> None:
        async with ConstraintCompiler(TINY, registry=fakes(), deadline=1.0) as compiler:
            await compiler.warm_up(["spin", "instant"])
            [pid] = compiler.worker_pids()
            started = time.monotonic()
            with pytest.raises(InvalidRequestError) as info:
                await compiler.compile(schema({"type": "null"}, backend="spin"))
            # One second of the worker's CPU time; a busy machine stretches the wall time.
            assert time.monotonic() - started < 1.0 * BACKSTOP + MARGIN
            assert "more than 1 s of CPU time" in info.value.message
            assert info.value.param == "guided_json"
            assert gone(pid)
            spent = cpu_seconds()
            await asyncio.sleep(0.5)
            assert cpu_seconds() - spent < 0.2  # nothing of ours is still spinning
            # A replacement worker serves the next spec, and the timeout was not cached.
            assert (await compiler.compile(schema({}, backend="instant"))).backend == "instant"
            assert pid not in compiler.worker_pids()
            pids = compiler.worker_pids()
        assert all(gone(p) for p in pids)

    run(scenario())
    for _ in range(50):
        if threading.active_count() <= threads_before:
            break
        time.sleep(0.05)
    assert threading.active_count() <= threads_before


def test_a_crashing_compile_is_a_400() -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(TINY, registry=fakes()) as compiler:
            with pytest.raises(InvalidRequestError) as info:
                await compiler.compile(schema({"type": "null"}, backend="crash"))
            assert "crashed" in info.value.message
            assert (await compiler.compile(schema({}, backend="instant"))).backend == "instant"

    run(scenario())


def _chain(n: int) -> dict[str, Any]:
    defs: dict[str, Any] = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(n)}
    defs[f"d{n}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


def _content_chain(n: int) -> dict[str, Any]:
    defs: dict[str, Any] = {
        f"d{i}": {"type": "object", "properties": {"x": {"$ref": f"#/$defs/d{i + 1}"}}}
        for i in range(n)
    }
    defs[f"d{n}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


def _megabyte() -> dict[str, Any]:
    props = {
        f"p{i}": {"type": "string", "enum": [f"v{i}_{j}" for j in range(4)]} for i in range(16_000)
    }
    value = {"type": "object", "properties": props}
    assert len(json.dumps(value)) > 1 << 20
    return value


PATHOLOGICAL = {
    "regex a{1000000}": ConstraintSpec(kind="regex", value="a{1000000}", param="guided_regex"),
    "regex nested groups": ConstraintSpec(
        kind="regex", value="(" * 300 + "a+" + ")+" * 300 + "$", param="guided_regex"
    ),
    "minItems 10^6": schema({"type": "array", "items": {"type": "integer"}, "minItems": 10**6}),
    "maxLength 10^7": schema({"type": "string", "maxLength": 10**7}),
    "deep $ref chain": schema(_chain(20_000)),
    "deep $ref content chain": schema(_content_chain(5_000)),
    "circular $ref": schema({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
    "1 MB schema": schema(_megabyte()),
    "outlines a{5000}": ConstraintSpec(
        kind="regex", value="a{5000}", param="guided_regex", backend="outlines"
    ),
    "lm-format-enforcer a{60000}": ConstraintSpec(
        kind="regex", value="a{60000}", param="guided_regex", backend="lm-format-enforcer"
    ),
}


def test_pathological_specs_are_a_400_within_the_deadline(
    vocabulary: ConstraintVocabulary,
) -> None:
    deadline = 2.0
    failures: list[str] = []

    async def ticker(gaps: list[float]) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def scenario() -> None:
        async with ConstraintCompiler(vocabulary, deadline=deadline) as compiler:
            for name, spec in PATHOLOGICAL.items():
                backend = "guidance" if spec.backend == "auto" else spec.backend
                await compiler.warm_up([backend])  # set-up is outside the deadline
                pids = compiler.worker_pids()
                gaps: list[float] = []
                tick = asyncio.ensure_future(ticker(gaps))
                started = time.monotonic()
                try:
                    await compiler.compile(spec)
                    failures.append(f"{name}: compiled")
                except InvalidRequestError as exc:
                    elapsed = time.monotonic() - started
                    if elapsed > deadline * BACKSTOP + MARGIN:
                        failures.append(f"{name}: took {elapsed:.1f} s")
                    if exc.param != spec.param:
                        failures.append(f"{name}: param {exc.param}")
                tick.cancel()
                if max(gaps, default=0) > 0.5:
                    failures.append(f"{name}: the event loop stalled {max(gaps):.2f} s")
                killed = [p for p in pids if p not in compiler.worker_pids()]
                if not all(gone(p) for p in killed):
                    failures.append(f"{name}: a killed worker is still running")

    run(scenario())
    assert not failures


# -- CPU time: the deadline, and what each token may cost ---------------------------------------


def test_the_deadline_is_the_workers_cpu_time_not_the_wall_clock() -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(TINY, registry=fakes(), deadline=0.5) as compiler:
            await compiler.warm_up(["sleep"])
            # Three seconds of wall time, almost no CPU: what a busy machine does to a compile.
            compiled = await compiler.compile(schema({"const": 1.5}, backend="sleep"))
            assert compiled.backend == "sleep"

    run(scenario())


def test_past_the_wall_clock_backstop_the_caller_is_told_to_retry() -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(
            TINY, registry=fakes(), deadline=0.5, backstop=2.0
        ) as compiler:
            await compiler.warm_up(["sleep"])
            [pid] = compiler.worker_pids()
            started = time.monotonic()
            with pytest.raises(Overloaded) as info:
                await compiler.compile(schema({"const": 30}, backend="sleep"))
            assert time.monotonic() - started < 1.0 + MARGIN
            assert info.value.status_code == 429 and info.value.retry_after >= 1
            assert gone(pid)
            assert (await compiler.compile(schema({}, backend="instant"))).backend == "instant"

    run(scenario())


def test_masks_over_the_budget_are_refused_and_auto_moves_on() -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(TINY, registry=costly_first()) as compiler:
            with pytest.raises(UnsupportedParameter) as info:
                await compiler.compile(schema({"type": "string"}, backend="slowmask"))
            assert info.value.param == "guided_json"
            assert "CPU time" in info.value.message and "slowmask" in info.value.message
            compiled = await compiler.compile(schema({"type": "string"}))
            assert compiled.backend == "instant"
            assert compiled.mask_budget is not None

    run(scenario())


def test_a_mask_that_never_returns_is_stopped_in_the_worker() -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(TINY, registry=costly_first()) as compiler:
            await compiler.warm_up(["endlessmask"])
            [pid] = compiler.worker_pids()
            started = time.monotonic()
            with pytest.raises(UnsupportedParameter) as info:
                await compiler.compile(schema({"type": "string"}, backend="endlessmask"))
            assert time.monotonic() - started < PROBE_CPU * BACKSTOP + MARGIN
            assert "CPU time" in info.value.message and info.value.param == "guided_json"
            assert gone(pid)
            # auto skips it (the refusal is cached) and the replacement worker serves.
            assert (await compiler.compile(schema({"type": "null"}))).backend == "instant"

    run(scenario())
