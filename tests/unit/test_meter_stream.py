"""The accounts meter passes a reply's stream on and, however the stream ends (the client
leaving included), closes it: a stream owns engine requests, and only closing it aborts them."""

from __future__ import annotations

import asyncio
from typing import Any

from pampero.api.accounts import Meter


class _Chunks:
    """An endless chunk stream that records being closed (as ``OwnedStream`` aborts then)."""

    def __init__(self) -> None:
        self.closed = False

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "x"}}]}

    async def aclose(self) -> None:
        self.closed = True


def test_a_watched_stream_the_client_leaves_is_closed() -> None:
    chunks = _Chunks()
    meter = Meter()

    async def leave_after_two() -> None:
        watched = meter._watch(chunks, meter._note_chunk)
        await anext(watched)
        await anext(watched)
        assert not chunks.closed
        await watched.aclose()  # what the SSE response does when the client disconnects

    asyncio.run(leave_after_two())
    assert chunks.closed
