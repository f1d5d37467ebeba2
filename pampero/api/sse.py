"""Server-sent events, as OpenAI frames them, and a response that notices a client leaving.

Backends yield typed chunks; this module alone turns them into bytes: ``data: {json}\n\n``
per chunk, then ``data: [DONE]\n\n``. Once a stream has started, its status line is already
sent; a failure after that point is reported in band as ``data: {"error": {...}}`` (which the
openai SDK raises as an APIError) followed by ``[DONE]``, never as a clean end of stream.

Starlette's own streaming response, under ASGI 2.4 servers, only learns of a disconnect when a
write fails; during a long prefill nothing is written, so the sequence would hold its slot.
``EventStreamResponse`` listens for ``http.disconnect`` while it streams and cancels the chunk
iterator at once, which aborts the engine request within one step.

The Responses API frames its events differently (``ResponsesFraming``): each event is
``event: <type>`` plus ``data: {json}``, there is no ``[DONE]``, and a failure after the start
is an ``error`` event with the next ``sequence_number``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import anyio
import orjson
from starlette.types import Receive, Scope, Send

from pampero.engines.stream import wake
from pampero.errors import EngineError, PamperoError
from pampero.protocol.replies import Chunk

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def event(payload: Mapping[str, Any]) -> bytes:
    """One SSE ``data:`` event carrying a JSON object."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class Framing(Protocol):
    """How one API turns its payloads into SSE bytes."""

    end: bytes

    def frame(self, payload: Mapping[str, Any]) -> bytes: ...

    def error(self, error: PamperoError) -> bytes: ...


class ChatFraming:
    """Chat and completions: ``data: {json}`` events, ``{"error": ...}``, ``[DONE]``."""

    end = DONE

    def frame(self, payload: Mapping[str, Any]) -> bytes:
        return event(payload)

    def error(self, error: PamperoError) -> bytes:
        return event(error.to_body())


class ResponsesFraming:
    """The Responses API: named events, an ``error`` event, no ``[DONE]``."""

    end = b""

    def __init__(self) -> None:
        self.next_sequence = 0

    def frame(self, payload: Mapping[str, Any]) -> bytes:
        self.next_sequence = int(payload.get("sequence_number", self.next_sequence - 1)) + 1
        name = str(payload.get("type", "message")).encode()
        return b"event: " + name + b"\n" + event(payload)

    def error(self, error: PamperoError) -> bytes:
        return self.frame(
            {
                "type": "error",
                "code": error.code,
                "message": error.message,
                "param": error.param,
                "sequence_number": self.next_sequence,
            }
        )


class EventStreamResponse:
    """An ASGI response streaming ``chunks`` as ``text/event-stream``."""

    def __init__(
        self,
        chunks: AsyncIterator[Chunk] | AsyncIterator[dict[str, Any]],
        headers: Mapping[str, str] | None = None,
        framing: Framing | None = None,
    ) -> None:
        self.chunks = chunks
        self.framing = framing or ChatFraming()
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
            # Also when the stream task never started (the client left at once): the chunks
            # own engine requests, and only closing them aborts them.
            await _close(self.chunks)

    async def _serve(self, receive: Receive, send: Send) -> None:
        outbox = Outbox()
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                try:
                    await self._stream(send, outbox)
                except OSError:
                    pass  # the client is gone; the listener ends the group
                finally:
                    group.cancel_scope.cancel()

            async def listen() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(outbox.fill, self.chunks, self.framing)
            group.start_soon(stream)
            group.start_soon(listen)

    async def _stream(self, send: Send, outbox: Outbox) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        while (data := await outbox.take()) is not None:
            last = outbox.ended  # the end goes with the last events, not in a send of its own
            await send({"type": "http.response.body", "body": data, "more_body": not last})
            if last:
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class Outbox:
    """Events from the task that produces them to the task that writes them. The writer takes
    everything produced since its last write in one piece: the events of one upstream read (or
    one engine step) leave in one write, not one write each. The producer waits while
    ``limit`` bytes are untaken (a slow client holds back the upstream, as before).

    Each side waits on a bare asyncio future (this runs once per token; an anyio event costs
    a backend lookup each time it is made)."""

    def __init__(self, limit: int = 1 << 16) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.done = False
        self._filled: asyncio.Future[None] | None = None  # the writer waits for events
        self._taken: asyncio.Future[None] | None = None  # the producer waits for room

    async def fill(self, chunks: AsyncIterator[Mapping[str, Any]], framing: Framing) -> None:
        """``chunks`` as SSE events, then the end marker; a failure after the start becomes
        an in-band error event. (Framed here, not in an async generator of its own: this runs
        once per token, and every generator level costs a resumption per token.)"""
        try:
            try:
                async for chunk in chunks:
                    if self._put(framing.frame(chunk)):
                        await self._room()
            except PamperoError as exc:
                self._put(framing.error(exc))
            except Exception as exc:  # an unexpected failure must still end the stream visibly
                log.exception("stream failed")
                self._put(framing.error(EngineError(f"generation failed: {type(exc).__name__}")))
            finally:
                await _close(chunks)
            if framing.end:
                self._put(framing.end)
        finally:
            self.done = True
            wake(self._filled)

    def _put(self, data: bytes) -> bool:
        """Queue ``data`` for the writer; True when the producer must wait for room."""
        self.parts.append(data)
        self.size += len(data)
        wake(self._filled)
        return self.size >= self.limit

    async def _room(self) -> None:
        self._taken = asyncio.get_running_loop().create_future()
        await self._taken

    @property
    def ended(self) -> bool:
        """Whether every event has been taken."""
        return self.done and not self.parts

    async def take(self) -> bytes | None:
        """Every event not yet taken, joined; None once the events have ended."""
        while not self.parts:
            if self.done:
                return None
            self._filled = asyncio.get_running_loop().create_future()
            await self._filled
        self._filled = None
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        if self._taken is not None:
            wake(self._taken)
            self._taken = None
        return data


async def _close(body: AsyncIterator[Any]) -> None:
    if getattr(body, "ag_frame", True) is None:
        return  # an async generator that has finished holds nothing to close (and a shielded
        # scope costs a backend lookup: this runs several times per stream)
    closer = getattr(body, "aclose", None)
    if closer is not None:
        with anyio.CancelScope(shield=True):
            await closer()
