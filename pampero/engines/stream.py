"""The async iterator every engine's ``generate`` returns, fed from the engine's own thread.

Items arrive through ``put`` on the event loop (engines hop there with
``loop.call_soon_threadsafe``): an ``EngineEvent``, an exception to raise, or ``None`` for the
end. Closing the iterator early (a client left) calls the cancel hook the engine bound, which
aborts the request within one engine step.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from pampero.inference import EngineEvent

Item = EngineEvent | BaseException | None


def wake(waiter: asyncio.Future[None] | None) -> None:
    """Resolve a waiter future, if there is one still waiting (a cancelled one is left)."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class EventStream:
    # A deque and one waiter rather than an asyncio.Queue: this runs once per token on the
    # event loop, and a queue's getter bookkeeping costs more than the rest of the hop.
    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._finished = False
        self._cancel: Callable[[], None] | None = None

    def bind(self, cancel: Callable[[], None]) -> None:
        """What to call if the consumer stops listening before the end."""
        self._cancel = cancel

    def put(self, item: Item) -> None:
        self._items.append(item)
        wake(self._waiter)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> EngineEvent:
        if self._finished:
            raise StopAsyncIteration
        if not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            except BaseException:
                await self.aclose()
                raise
            finally:
                self._waiter = None
        item = self._items.popleft()
        if item is None:
            self._finished = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        return item

    async def aclose(self) -> None:
        if not self._finished:
            self._finished = True
            if self._cancel is not None:
                self._cancel()
