"""The HTTP server ``pampero serve`` runs: uvicorn, with a cap on request heads and a drain.

Request heads: uvicorn's httptools protocol (llhttp, in C) parses them; uvicorn's h11 one, in
pure Python, was a third of the gateway's CPU time per request. llhttp would buffer a head of
any size, so ``CappedHttpToolsProtocol`` counts the bytes of each head as they arrive: past
``max_header_bytes`` of request line plus headers the client gets a 431 in OpenAI's error
shape and the connection closes (a pipelined head that starts inside the read that ended the
previous request is counted from the next read on, so the bound is the cap plus one read); any
other unparseable request is a 400 in the same shape. The number of headers is capped in the
app (``api/middleware.py: HeaderLimit``). ``CappedH11Protocol`` keeps the h11 variant.

Shutdown: the first SIGTERM or SIGINT does not stop the server; it starts the drain described
in ``api/lifecycle.py``, and the process exits (status 0) when the last request in flight is
answered, or soon after ``drain_timeout``. A second signal exits at once.
"""

from __future__ import annotations

import http
import logging
import re
from types import FrameType
from typing import Any

import h11
import orjson
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pampero.api.lifecycle import Lifecycle
from pampero.errors import HeadersTooLarge, InvalidRequestError, PamperoError
from pampero.settings import Settings

log = logging.getLogger(__name__)

# After the drain's deadline has ended what was running, how long those requests get to send
# their error before the server stops waiting for them.
_AFTER_DEADLINE_S = 5.0
_TICK_S = 0.1  # uvicorn calls ``on_tick`` this often


class CappedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering a request it cannot parse in OpenAI's error shape:
    431 when the head outgrew the parser's buffer cap, 400 otherwise."""

    def send_400_response(self, msg: str) -> None:
        cap = self.config.h11_max_incomplete_event_size
        buffered, _ = self.conn.trailing_data
        error: PamperoError
        if cap is not None and len(buffered) > cap:
            error = HeadersTooLarge(f"the request line and headers exceed the {cap}-byte limit")
        else:
            error = InvalidRequestError("the HTTP request is malformed")
        payload = orjson.dumps(error.to_body())
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=error.status_code, headers=headers),
            h11.Data(data=payload),
            h11.EndOfMessage(),
        ):
            output = self.conn.send(event)
            if output:
                self.transport.write(output)
        self.transport.close()


class CappedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on request heads and errors in OpenAI's shape."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_cap: int | None = self.config.h11_max_incomplete_event_size
        self.in_head = True  # between the end of a request (or the connection's start) and
        # the end of the next one's head
        self.head_bytes = 0
        self.head_tail = b""  # the head's last bytes: its CRLFCRLF may span two reads

    def data_received(self, data: bytes) -> None:
        if self.in_head and self.head_cap is not None:
            window = self.head_tail + data
            end = window.find(b"\r\n\r\n")
            size = self.head_bytes + (len(data) if end < 0 else end + 4 - len(self.head_tail))
            if size > self.head_cap:
                cap = self.head_cap
                self._refuse(
                    HeadersTooLarge(f"the request line and headers exceed the {cap}-byte limit")
                )
                return
            self.head_bytes = size
            self.head_tail = window[-3:]
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self.in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head, self.head_bytes, self.head_tail = True, 0, b""

    def send_400_response(self, msg: str) -> None:
        self._refuse(InvalidRequestError("the HTTP request is malformed"))

    def _refuse(self, error: PamperoError) -> None:
        payload = orjson.dumps(error.to_body())
        reason = http.HTTPStatus(error.status_code).phrase.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (error.status_code, reason, len(payload), payload)
        )
        self.transport.close()
        self.in_head = False  # nothing more is read from this connection


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` whose first exit signal starts a drain instead of a shutdown."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self._announced = False
        self._expired_at: float | None = None
        self._ticks = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs as a signal handler: set values only. Unlike uvicorn, the signal is not raised
        # again after the shutdown, so a drained server exits with status 0.
        if not self.lifecycle.draining:
            self.lifecycle.start_drain()
        elif self.should_exit:
            self.force_exit = True
        else:
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        lifecycle = self.lifecycle
        if not lifecycle.draining:
            return False
        if not self._announced:
            self._announced = True
            log.info(
                "draining: %d request(s) in flight may take up to %.0f s; new ones get 503",
                lifecycle.in_flight,
                lifecycle.drain_timeout,
            )
        if lifecycle.in_flight == 0:
            return True
        if self._expired_at is None and lifecycle.past_deadline():
            log.warning(
                "drain deadline passed with %d request(s) in flight; ending them",
                lifecycle.in_flight,
            )
            self._expired_at = 0.0
            await lifecycle.expire()
        if self._expired_at is not None:
            self._expired_at += _TICK_S
            return self._expired_at >= _AFTER_DEADLINE_S
        return False


_OWN_ERROR = re.compile(r"^pampero\.errors\.\w+: (?P<message>.+)\Z", re.DOTALL)


class StartupErrorFilter(logging.Filter):
    """Shortens uvicorn's report of a failed start to the message when pampero's own error
    tree raised it (a model that will not load, a database that will not open): those messages
    are written for the user, and the traceback above them only buries the line that says what
    to fix. Any other exception keeps its traceback: that one is a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith("Traceback"):
            return True
        last = text.rstrip().rsplit("\n", 1)[-1]
        own = _OWN_ERROR.match(last)
        if own is not None:
            record.msg, record.args = "pampero could not start: %s", (own["message"],)
        return True


def serve(app: Starlette, settings: Settings) -> int:
    """Run ``app`` until it has drained after a signal; the process's exit status."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # pampero.api.access_log writes it, without query strings
        http=CappedHttpToolsProtocol,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_graceful_shutdown=int(_AFTER_DEADLINE_S),
    )
    lifecycle: Lifecycle = app.state.lifecycle
    server = DrainingServer(config, lifecycle)
    startup_errors = StartupErrorFilter()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(startup_errors)
    try:
        server.run()
    finally:
        uvicorn_log.removeFilter(startup_errors)
    if not server.started:
        return 3  # uvicorn's status for a server that could not start
    return 0


__all__ = [
    "CappedH11Protocol",
    "CappedHttpToolsProtocol",
    "DrainingServer",
    "StartupErrorFilter",
    "serve",
]
