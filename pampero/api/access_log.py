"""An info-level line per request: method, path, status, bytes in and out, and time taken.

It replaces uvicorn's access log, which writes the query string (where a client may put a key
or a payload) and the whole path. Headers (``Authorization`` among them), query strings and
bodies are never logged and a path is cut at ``PATH_CHARS``, so even a debug log holds no key
and no payload a client sent (the test suite reads every server's log for them).
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("pampero.access")
PATH_CHARS = 80


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen = {"status": 0, "in": 0, "out": 0}

        async def counted_receive() -> Message:
            message = await receive()
            seen["in"] += len(message.get("body", b""))
            return message

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counted_receive, counted_send)
        finally:
            path: str = scope["path"]
            line = "%s %s -> %s, %d bytes in, %d bytes out, %.1f ms"
            fields = [
                scope["method"],
                path if len(path) <= PATH_CHARS else path[:PATH_CHARS] + "...",
                seen["status"] or "no response",
                seen["in"],
                seen["out"],
                (time.perf_counter() - started) * 1000,
            ]
            if log.isEnabledFor(logging.DEBUG):  # the header names too, never their values
                names = sorted({name.decode("latin-1")[:40] for name, _ in scope["headers"]})
                log.debug(line + "; headers: %s", *fields, ", ".join(names[:30]))
            else:
                log.info(line, *fields)
