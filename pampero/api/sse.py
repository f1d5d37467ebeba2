"""An SSE response that notices a client leaving.

Starlette's own streaming response, under ASGI 2.4 servers, only learns of a disconnect when a
write fails; during a long prefill nothing is written, so the sequence would hold its slot.
``EventStreamResponse`` listens for ``http.disconnect`` while it streams and cancels the body
iterator at once, which aborts the engine request within one step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import anyio
from starlette.types import Receive, Scope, Send


class EventStreamResponse:
    """An ASGI response streaming ``body`` as ``text/event-stream``."""

    def __init__(
        self, body: AsyncIterator[bytes], headers: Mapping[str, str] | None = None
    ) -> None:
        self.body = body
        self.headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        for key, value in (headers or {}).items():
            self.headers.append((key.lower().encode("latin-1"), value.encode("latin-1")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._serve(receive, send)
        finally:
            # Also when the stream task never started (the client left at once): the body
            # owns engine requests, and only closing it aborts them.
            await _close(self.body)

    async def _serve(self, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                try:
                    await self._stream(send)
                except OSError:
                    pass  # the client is gone; the listener ends the group
                finally:
                    group.cancel_scope.cancel()

            async def listen() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(stream)
            group.start_soon(listen)

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        try:
            async for chunk in self.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await _close(self.body)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _close(body: AsyncIterator[bytes]) -> None:
    closer = getattr(body, "aclose", None)
    if closer is not None:
        with anyio.CancelScope(shield=True):
            await closer()
