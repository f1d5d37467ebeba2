"""A least-recently-used map bounded both in entries and in bytes.

Each value comes with its size; inserting evicts from the cold end until both bounds hold again
(the entry just inserted stays, even when it alone is over the byte bound, so that the request
that paid for it can use it). Not thread-safe: the constraint compiler touches it only from its
event loop.

Example::

    cache = BoundedLRU[str, bytes](max_entries=2, max_bytes=1024)
    cache.put("a", b"x", 1)
    cache.get("a")          # b"x", now the most recent
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedLRU(Generic[K, V]):
    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a cache needs room for at least one entry and one byte")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        self._items.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V, size: int) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._items[key] = (value, size)
        self._bytes += size
        while len(self._items) > 1 and (
            len(self._items) > self.max_entries or self._bytes > self.max_bytes
        ):
            _, (_, evicted) = self._items.popitem(last=False)
            self._bytes -= evicted

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
