"""Stored responses, for ``GET``/``DELETE /v1/responses/{id}`` and ``previous_response_id``.

An in-memory LRU bounded both in entries and in bytes (a conversation can carry images as data
URIs). Each entry keeps the Response object and the conversation that led to it (its own
input after that of its predecessors), so a chain still continues when an older response in
it has been evicted. Only the event loop touches the store, so it needs no lock.

Example::

    store = ResponseStore(max_items=1000, max_bytes=256 * 2**20)
    store.put(response, history=[...])       # history: input items as JSON dicts
    store.get("resp_...").conversation()     # history + the response's output
    store.find_item("msg_...")                # an item of any stored response, for item_reference
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from pampero.errors import NotFoundError


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]
    history: list[dict[str, Any]]
    size: int

    def conversation(self) -> list[dict[str, Any]]:
        """The items a response continuing this one follows: the input, then the output."""
        return [*self.history, *self.response.get("output", ())]


class ResponseStore:
    def __init__(self, *, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, response: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """Keep ``response``; the least recently used entries make room. One larger than the
        whole budget is not kept."""
        size = len(orjson.dumps(response)) + len(orjson.dumps(history))
        self._drop(response["id"])
        if size > self.max_bytes or self.max_items == 0:
            return
        self._entries[response["id"]] = StoredResponse(response, history, size)
        self._bytes += size
        while len(self._entries) > self.max_items or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def get(self, response_id: str, *, param: str | None = None) -> StoredResponse:
        entry = self._entries.get(response_id)
        if entry is None:
            raise NotFoundError(
                f"No response with id '{response_id[:100]}' is stored (responses created with "
                "store=false are not kept, and the oldest are dropped when the store is full).",
                param=param,
                code="response_not_found",
            )
        self._entries.move_to_end(response_id)
        return entry

    def find_item(self, item_id: str, *, param: str | None = None) -> dict[str, Any]:
        """The item with id ``item_id`` in a stored response's input or output, the most
        recently stored first (404 if none holds it)."""
        for entry in reversed(self._entries.values()):
            for item in entry.conversation():
                if item.get("id") == item_id:
                    return item
        raise NotFoundError(
            f"No item with id '{item_id[:100]}' is stored (only the input and output items of "
            "stored responses can be referenced).",
            param=param,
            code="item_not_found",
        )

    def delete(self, response_id: str) -> None:
        self.get(response_id)
        self._drop(response_id)

    def _drop(self, response_id: str) -> None:
        entry = self._entries.pop(response_id, None)
        if entry is not None:
            self._bytes -= entry.size
