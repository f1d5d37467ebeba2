"""Input items as a stored response keeps them, ``item_reference`` inputs, and the
``GET /v1/responses/{id}/input_items`` list.

A response is stored with the items that led to it (``ResponseStore``), each in the form
OpenAI returns items in: with an ``id`` (``msg_...``, ``fc_...``, ``fco_...``, ``rs_...``) and a
``status``, a message's text as content parts. So an input item can be referenced later
(``{"type": "item_reference", "id": "msg_..."}``) exactly as an output item can, and listed.

Example::

    own = resolve(request.input_items, store)             # references replaced by the items
    history = [as_resource(item) for item in own]          # what the store keeps
    page = list_page(stored.history, limit=20, order="desc", after=None)
"""

from __future__ import annotations

from typing import Any

from pampero.errors import InvalidRequestError
from pampero.responses.events import new_id
from pampero.responses.protocol import ITEMS, Item, ItemReference, MessageItem
from pampero.responses.store import ResponseStore

_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}
MAX_LIMIT = 100


def resolve(items: list[Item | ItemReference], store: ResponseStore, origin: str) -> list[Item]:
    """``items`` with each reference replaced by the stored item it names (404 if none);
    ``origin`` is the request field the items came from (``input``)."""
    resolved: list[Item] = []
    for index, item in enumerate(items):
        if isinstance(item, ItemReference):
            found = store.find_item(item.id, param=f"{origin}[{index}].id")
            resolved += ITEMS.validate_python([found])
        else:
            resolved.append(item)
    return resolved


def as_resource(item: Item) -> dict[str, Any]:
    """``item`` as a stored response lists it: with an id and a status, text as parts."""
    body = item.model_dump(mode="json", by_alias=True, exclude_none=True)
    body.setdefault("type", "message")
    body.setdefault("id", new_id(_PREFIX[body["type"]]))
    body.setdefault("status", "completed")
    if isinstance(item, MessageItem):
        body["content"] = _parts(item)
    return body


def _parts(item: MessageItem) -> list[dict[str, Any]]:
    text_type = "output_text" if item.role == "assistant" else "input_text"
    if isinstance(item.content, str):
        parts: list[dict[str, Any]] = [{"type": text_type, "text": item.content}]
    else:
        parts = [part.model_dump(mode="json", exclude_none=True) for part in item.content]
    if item.role == "assistant":
        for part in parts:
            if part["type"] in ("output_text", "input_text"):
                part["type"] = "output_text"
                part.setdefault("annotations", [])
                part.setdefault("logprobs", [])
    return parts


def list_page(
    items: list[dict[str, Any]], *, limit: int, order: str, after: str | None
) -> dict[str, Any]:
    """One page of ``items`` as OpenAI's ``ResponseItemList``."""
    ordered = list(items) if order == "asc" else list(reversed(items))
    if after is not None:
        ids = [item.get("id") for item in ordered]
        if after not in ids:
            raise InvalidRequestError(
                f"Invalid value for 'after': no input item of this response has id "
                f"'{after[:100]}'.",
                param="after",
            )
        ordered = ordered[ids.index(after) + 1 :]
    data = ordered[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(ordered) > limit,
    }


def page_query(query: dict[str, list[str]]) -> tuple[int, str, str | None, list[str]]:
    """``limit``, ``order``, ``after`` and ``include`` of an ``input_items`` query string, each
    checked (a 400 names the bad one)."""
    for name, values in query.items():
        if name not in ("limit", "order", "after", "include", "include[]"):
            raise InvalidRequestError(f"Unknown parameter: '{name[:64]}'.", param=name[:64])
        if name not in ("include", "include[]") and len(values) > 1:
            raise InvalidRequestError(f"'{name}' is given more than once.", param=name)
    limit = 20
    if "limit" in query:
        raw = query["limit"][0]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise InvalidRequestError(
                f"Invalid value for 'limit': expected an integer from 1 to {MAX_LIMIT}, got "
                f"'{raw[:20]}'.",
                param="limit",
            )
        limit = int(raw)
    order = query.get("order", ["desc"])[0]
    if order not in ("asc", "desc"):
        raise InvalidRequestError(
            f"Invalid value for 'order': expected 'asc' or 'desc', got '{order[:20]}'.",
            param="order",
        )
    after = query["after"][0] if "after" in query else None
    include = [*query.get("include", []), *query.get("include[]", [])]
    return limit, order, after, include
