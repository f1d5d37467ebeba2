"""Compile workers: processes that validate and compile constraints, and can be killed.

A compile that overruns its deadline cannot be stopped from inside Python (the libraries spin in
native code holding their own state), so it runs in a child process started with ``forkserver``
(or ``spawn``): never a ``fork`` of the serving process, whose llama.cpp threads a fork would
copy mid-flight. On a deadline the child is killed and its parent-side handle discarded. A child
lowers its own CPU priority, so a long compile yields to the decode loop on a small machine.

The deadline is CPU time of the child (read from ``/proc/<pid>/stat`` while waiting; wall time
where there is no ``/proc``), so a busy machine, which stretches a compile's wall time, does not
turn it into a refusal; a wall-clock backstop, several times longer, still bounds the wait. After
compiling, the child times the constraint's first tokens (``probe``) against the decode
thread's ``MaskBudget``, and refuses a constraint over it.

The child keeps each backend's vocabulary adaptation (built by ``prepare``, outside the
deadline) across compiles. Messages are tuples: ``(op, backend, spec)`` in,
``(status, payload, cpu_seconds)`` out, where an error payload is ``(kind, message, param)``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import Any

from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.probe import probe
from pampero.constraints.registry import BackendEntry, BackendRegistry
from pampero.constraints.validation import Limits, validate
from pampero.errors import BeyondLimits, InvalidRequestError, UnsupportedParameter
from pampero.sampling.constraint import MaskBudget

_NICENESS = 10
_POLL = 0.02  # seconds between looks at a compiling child's CPU time
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class WorkerOverran(Exception):
    """The worker did not answer within the time it was given (it has been killed).

    ``cpu``: it used up its CPU time (the spec is too costly); otherwise the wall-clock
    backstop ran out first (the machine is too busy)."""

    def __init__(self, *, cpu: bool) -> None:
        super().__init__("CPU time" if cpu else "wall-clock backstop")
        self.cpu = cpu


class WorkerDied(Exception):
    """The worker exited while compiling (a native crash, e.g. a stack overflow)."""


Context = ForkServerContext | SpawnContext


def start_method_context() -> Context:
    if "forkserver" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def serve(
    conn: Connection,
    vocabulary: ConstraintVocabulary,
    entries: Mapping[str, BackendEntry],
    limits: Limits,
    budget: MaskBudget | None = None,
) -> None:
    """The child's loop: answer requests until the parent closes its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process ends
    with contextlib.suppress(OSError):
        os.nice(_NICENESS)
    registry = BackendRegistry(entries)
    last: dict[str, Any] = {}  # the last compile's artifact, for the probe that follows it
    while True:
        try:
            op, name, spec = conn.recv()
        except (EOFError, OSError):
            return
        started = time.process_time()
        status, payload = _answer(registry, vocabulary, limits, budget, last, op, name, spec)
        conn.send((status, payload, time.process_time() - started))


def _answer(
    registry: BackendRegistry,
    vocabulary: ConstraintVocabulary,
    limits: Limits,
    budget: MaskBudget | None,
    last: dict[str, Any],
    op: str,
    name: str,
    spec: ConstraintSpec | None,
) -> tuple[str, Any]:
    param = spec.param if spec is not None else None
    try:
        backend = registry.backend(name)
        if spec is None:
            backend.prepare(vocabulary)
            return ("ok", None)
        if op == "probe":
            compiled = backend.load(last.pop("artifact"), spec, vocabulary)
            probe(backend, compiled, spec, vocabulary, budget or MaskBudget())
            return ("ok", None)
        last.clear()
        validate(spec, limits)
        last["artifact"] = artifact = backend.compile(spec, vocabulary)
        return ("ok", artifact)
    except BeyondLimits as exc:
        return ("error", ("beyond", exc.message, exc.param))
    except UnsupportedParameter as exc:
        return ("error", ("unsupported", exc.message, exc.param))
    except InvalidRequestError as exc:
        return ("error", ("invalid", exc.message, exc.param))
    except RecursionError:
        return ("error", ("beyond", "the constraint nests too deep to compile", param))
    except MemoryError:
        return ("error", ("beyond", "the constraint needs too much memory to compile", param))
    except Exception as exc:  # a library's own failure on a well-formed spec
        text = f"{name} failed on this constraint: {type(exc).__name__}: {exc}"
        return ("error", ("unsupported", text[:500], param))


class CompileWorker:
    """The serving process's handle on one compile worker. One caller at a time."""

    def __init__(
        self,
        context: Context,
        vocabulary: ConstraintVocabulary,
        entries: Mapping[str, BackendEntry],
        limits: Limits,
        budget: MaskBudget | None = None,
    ) -> None:
        parent, child = context.Pipe(duplex=True)
        self._conn: Connection = parent
        self.process: multiprocessing.process.BaseProcess = context.Process(
            target=serve,
            args=(child, vocabulary, dict(entries), limits, budget),
            name="pampero-constraint-compiler",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.prepared: set[str] = set()
        self.last_cpu = 0.0  # CPU seconds the child spent on the last call

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def prepare(self, name: str, timeout: float) -> None:
        if name not in self.prepared:
            self._call("prepare", name, None, timeout, timeout)
            self.prepared.add(name)

    def compile(
        self, name: str, spec: ConstraintSpec, cpu_seconds: float, wall_seconds: float
    ) -> Any:
        """The backend's artifact; raises the spec's 400, ``WorkerOverran`` (past
        ``cpu_seconds`` of the child's CPU time, or ``wall_seconds``) or ``WorkerDied``.
        Either way ``last_cpu`` is then the CPU time the child spent on it."""
        return self._call("compile", name, spec, cpu_seconds, wall_seconds)

    def probe(
        self, name: str, spec: ConstraintSpec, cpu_seconds: float, wall_seconds: float
    ) -> None:
        """Time the first tokens of what ``compile`` just built (``probe.probe``); raises
        ``UnsupportedParameter`` if they are over the mask budget, ``WorkerOverran`` past
        ``cpu_seconds`` (a mask that takes that long is over any budget) or ``wall_seconds``."""
        self._call("probe", name, spec, cpu_seconds, wall_seconds)

    def cpu_seconds(self) -> float | None:
        """CPU time the child has used (user + system), or None where it cannot be read."""
        try:
            with open(f"/proc/{self.process.pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def _call(
        self, op: str, name: str, spec: ConstraintSpec | None, cpu_limit: float, wall_limit: float
    ) -> Any:
        try:
            self._conn.send((op, name, spec))
            self._wait(cpu_limit, wall_limit)
            status, payload, self.last_cpu = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self.kill()
            raise WorkerDied() from None
        if status == "ok":
            return payload
        kind, message, param = payload
        raise _ERRORS[kind](message, param=param)

    def _wait(self, cpu_limit: float, wall_limit: float) -> None:
        """Until the child answers; kill it past ``cpu_limit`` of its CPU or ``wall_limit``."""
        started_wall = time.monotonic()
        started_cpu = self.cpu_seconds()
        while not self._conn.poll(_POLL):
            wall = time.monotonic() - started_wall
            now = self.cpu_seconds()
            cpu = now - started_cpu if now is not None and started_cpu is not None else wall
            self.last_cpu = cpu
            if cpu > cpu_limit or wall > wall_limit:
                self.kill()
                raise WorkerOverran(cpu=cpu > cpu_limit)

    def kill(self) -> None:
        """End the process now and reap it."""
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()
        with contextlib.suppress(OSError, ValueError, AssertionError):
            self.process.join(5.0)
        with contextlib.suppress(OSError):
            self._conn.close()

    def stop(self) -> None:
        """End the process: ask (close the pipe), then insist."""
        with contextlib.suppress(OSError):
            self._conn.close()
        with contextlib.suppress(OSError, ValueError, AssertionError):
            self.process.join(1.0)
        if self.process.is_alive():
            self.kill()


_ERRORS: dict[str, type[InvalidRequestError]] = {
    "beyond": BeyondLimits,
    "unsupported": UnsupportedParameter,
    "invalid": InvalidRequestError,
}
