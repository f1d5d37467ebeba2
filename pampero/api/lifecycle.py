"""The process's serving state: requests in flight, and the drain before it exits.

On the first SIGTERM or SIGINT (``api/server.py``) the server starts draining: ``DrainGate``
answers every new request with a 503 ``server_shutting_down`` and ``Retry-After`` (``/metrics``
still answers), requests already in flight go on, and the process exits as soon as none is
left. When ``drain_timeout`` passes first, the callbacks registered in ``on_deadline`` run (the
app's lifespan registers stopping the engines), so what is still running ends with an error
(a 503 body, or an in-band error event in a stream) rather than a dropped connection, and the
process still exits 0. A second signal stops waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from pampero.api.middleware import reply
from pampero.errors import ShuttingDown

log = logging.getLogger(__name__)

# Paths still answered while draining: monitoring wants to watch the drain.
_DURING_DRAIN = frozenset({"/metrics"})


class Lifecycle:
    """Counts HTTP requests in flight and holds the drain's start and deadline."""

    def __init__(self, drain_timeout: float) -> None:
        self.drain_timeout = drain_timeout
        self.in_flight = 0
        self.drain_started: float | None = None
        self.on_deadline: list[Callable[[], Awaitable[None]]] = []

    @property
    def draining(self) -> bool:
        return self.drain_started is not None

    def start_drain(self) -> None:
        """Begin draining (safe to call from a signal handler: it only sets a value)."""
        if self.drain_started is None:
            self.drain_started = time.monotonic()

    def past_deadline(self) -> bool:
        return (
            self.drain_started is not None
            and time.monotonic() - self.drain_started >= self.drain_timeout
        )

    async def expire(self) -> None:
        """The deadline passed: end what is still running."""
        for callback in self.on_deadline:
            try:
                await callback()
            except Exception:  # one failing callback must not keep the others from running
                log.exception("drain deadline callback failed")


class DrainGate:
    """Counts requests in flight; refuses new ones with a 503 while the server drains."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.lifecycle.draining and scope["path"] not in _DURING_DRAIN:
            error = ShuttingDown("the server is shutting down; retry shortly")
            retry = str(error.retry_after).encode()
            await reply(
                send,
                error.status_code,
                error.to_body(),
                [(b"retry-after", retry), (b"connection", b"close")],
            )
            return
        self.lifecycle.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.lifecycle.in_flight -= 1
