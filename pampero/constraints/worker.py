"""Compile workers: processes that validate and compile constraints, and can be killed.

A compile that overruns its deadline cannot be stopped from inside Python (the libraries spin in
native code holding their own state), so it runs in a child process started with ``forkserver``
(or ``spawn``): never a ``fork`` of the serving process, whose llama.cpp threads a fork would
copy mid-flight. On a deadline the child is killed and its parent-side handle discarded. A child
lowers its own CPU priority, so a long compile yields to the decode loop on a small machine.

The child keeps each backend's vocabulary adaptation (built by ``prepare``, outside the
deadline) across compiles. Messages are tuples: ``(op, backend, spec)`` in, ``(status, payload)``
out, where an error payload is ``(kind, message, param)``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Mapping
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import Any

from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.registry import BackendEntry, BackendRegistry
from pampero.constraints.validation import Limits, validate
from pampero.errors import InvalidRequestError, UnsupportedParameter

_NICENESS = 10


class WorkerOverran(Exception):
    """The worker did not answer within the time it was given (it has been killed)."""


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
) -> None:
    """The child's loop: answer requests until the parent closes its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process ends
    with contextlib.suppress(OSError):
        os.nice(_NICENESS)
    registry = BackendRegistry(entries)
    while True:
        try:
            op, name, spec = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(_answer(registry, vocabulary, limits, op, name, spec))


def _answer(
    registry: BackendRegistry,
    vocabulary: ConstraintVocabulary,
    limits: Limits,
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
        validate(spec, limits)
        return ("ok", backend.compile(spec, vocabulary))
    except UnsupportedParameter as exc:
        return ("error", ("unsupported", exc.message, exc.param))
    except InvalidRequestError as exc:
        return ("error", ("invalid", exc.message, exc.param))
    except RecursionError:
        return ("error", ("invalid", "the constraint nests too deep to compile", param))
    except MemoryError:
        return ("error", ("invalid", "the constraint needs too much memory to compile", param))
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
    ) -> None:
        parent, child = context.Pipe(duplex=True)
        self._conn: Connection = parent
        self.process: multiprocessing.process.BaseProcess = context.Process(
            target=serve,
            args=(child, vocabulary, dict(entries), limits),
            name="pampero-constraint-compiler",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.prepared: set[str] = set()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def prepare(self, name: str, timeout: float) -> None:
        if name not in self.prepared:
            self._call("prepare", name, None, timeout)
            self.prepared.add(name)

    def compile(self, name: str, spec: ConstraintSpec, timeout: float) -> Any:
        """The backend's artifact; raises the spec's 400, ``WorkerOverran`` or ``WorkerDied``."""
        return self._call("compile", name, spec, timeout)

    def _call(self, op: str, name: str, spec: ConstraintSpec | None, timeout: float) -> Any:
        try:
            self._conn.send((op, name, spec))
            if not self._conn.poll(max(timeout, 0.0)):
                self.kill()
                raise WorkerOverran()
            status, payload = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self.kill()
            raise WorkerDied() from None
        if status == "ok":
            return payload
        kind, message, param = payload
        raise (UnsupportedParameter if kind == "unsupported" else InvalidRequestError)(
            message, param=param
        )

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
