"""``EventStreamResponse`` writes the events that are ready together in one piece: the events of
one upstream read (or one engine step) leave in one write, the bytes unchanged, and a client that
reads slowly holds the producer back instead of letting events pile up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from pampero.api.sse import DONE, EventStreamResponse, Outbox
from pampero.errors import PamperoError, UpstreamError


def chunk(text: str) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"delta": {"content": text}}]}


def frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def serve(chunks: AsyncIterator[dict[str, Any]]) -> list[bytes]:
    """The body writes of one streamed response (the last one ends it)."""
    writes: list[bytes] = []
    ends: list[bool] = []
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            writes.append(message["body"])
            ends.append(not message.get("more_body", False))

    await EventStreamResponse(chunks)({"type": "http"}, receive, send)
    assert ends == [False] * (len(ends) - 1) + [True]
    return writes


def test_events_ready_together_leave_in_one_write() -> None:
    async def chunks() -> AsyncIterator[dict[str, Any]]:
        for text in ("a", "b", "c"):  # one read's worth: no wait between them
            yield chunk(text)
        await asyncio.sleep(0.01)  # the next read
        for text in ("d", "e"):
            yield chunk(text)

    writes = asyncio.run(serve(chunks()))
    first = b"".join(frame(chunk(t)) for t in "abc")
    second = b"".join(frame(chunk(t)) for t in "de") + DONE
    assert writes == [first, second]


def test_a_failure_after_the_start_is_in_band_and_ends_the_stream() -> None:
    async def chunks() -> AsyncIterator[dict[str, Any]]:
        yield chunk("a")
        await asyncio.sleep(0)
        raise UpstreamError("the provider failed mid-stream")

    writes = asyncio.run(serve(chunks()))
    body = b"".join(writes)
    error = frame(UpstreamError("the provider failed mid-stream").to_body())
    assert body == frame(chunk("a")) + error + DONE


def test_a_slow_writer_holds_the_producer_back() -> None:
    produced = 0

    class Fixed:  # every chunk is 40 bytes on the wire, and there is no end marker
        end = b""

        def frame(self, payload: Mapping[str, Any]) -> bytes:
            return b"x" * 40

        def error(self, error: PamperoError) -> bytes:
            raise AssertionError(error)

    async def events() -> AsyncIterator[dict[str, Any]]:
        nonlocal produced
        for _ in range(10):
            produced += 1
            yield {}

    async def run() -> list[int]:
        outbox = Outbox(limit=100)
        filler = asyncio.ensure_future(outbox.fill(events(), Fixed()))
        await asyncio.sleep(0)
        seen = [produced]  # stopped once 100 bytes waited: 3 events of 40
        taken = []
        while (data := await outbox.take()) is not None:
            taken.append(len(data))
        await filler
        return seen + taken

    seen, *taken = asyncio.run(run())
    assert seen == 3
    assert sum(taken) == 400 and max(taken) <= 120
