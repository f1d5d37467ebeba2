"""The Responses use case: a Responses request answered by the chat backend of its model.

One request goes: stored conversation of ``previous_response_id`` (404 if it is not stored)
→ its ``item_reference`` inputs replaced by the stored items (``items.resolve``)
→ ``translate.to_chat`` → validated as a chat request → the model's ``ChatBackend`` (which
refuses what it cannot honour, so a parameter is never dropped) → its chunks through a
``ResponseBuilder`` → events (streamed) or the folded Response → stored unless ``store`` is
false. Errors the backend raises about a chat field name the Responses field instead.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from pampero.backends import ChatBackend, RequestContext
from pampero.backends.catalogue import Catalogue
from pampero.errors import InvalidRequestError, PamperoError, UnsupportedParameter
from pampero.protocol import ChatCompletionRequest, Parsed
from pampero.protocol.parsing import validate_object
from pampero.protocol.replies import Reply
from pampero.responses.events import Event, ResponseBuilder, chunks_of_body, new_id
from pampero.responses.items import as_resource, list_page, page_query, resolve
from pampero.responses.protocol import ITEMS, CreateResponseRequest, NamedFunction
from pampero.responses.store import ResponseStore
from pampero.responses.translate import (
    ChatPlan,
    check_includes,
    rename_param,
    to_chat,
    tool_strict,
)

IGNORED_HEADER = "x-pampero-ignored-params"


@dataclass
class ResponsesReply:
    """A whole Response ``body``, or the ``events`` of a streamed one, plus headers."""

    body: dict[str, Any] | None = None
    events: AsyncIterator[Event] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class ResponsesService:
    def __init__(self, catalogue: Catalogue, store: ResponseStore) -> None:
        self.catalogue = catalogue
        self.store = store

    def get(self, response_id: str) -> dict[str, Any]:
        return self.store.get(response_id).response

    def input_items(self, response_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """``GET /v1/responses/{id}/input_items``: the items the response followed (its own
        input after those of the responses it continued), newest first unless ``order=asc``."""
        limit, order, after, include = page_query(query)
        check_includes(include, "include")
        stored = self.store.get(response_id)
        return list_page(stored.history, limit=limit, order=order, after=after)

    def delete(self, response_id: str) -> dict[str, Any]:
        self.store.delete(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    async def create(
        self, parsed: Parsed[CreateResponseRequest], context: RequestContext
    ) -> ResponsesReply:
        request = parsed.request
        history: list[dict[str, Any]] = []
        if request.previous_response_id is not None:
            previous = self.store.get(request.previous_response_id, param="previous_response_id")
            history = previous.conversation()
        resolved = resolve(request.input_items, self.store, "input")
        plan = to_chat(request, ITEMS.validate_python(history), resolved)
        backend, reply = await self._chat(plan, context)
        builder = ResponseBuilder(_skeleton(request, backend.card.id))
        own = [as_resource(item) for item in resolved]

        def remember() -> None:
            if request.store and builder.response["status"] in ("completed", "incomplete"):
                self.store.put(builder.response, [*history, *own])

        headers = dict(reply.headers)
        ignored = [*parsed.ignored, *plan.ignored]
        if headers.get(IGNORED_HEADER):
            ignored += headers[IGNORED_HEADER].split(", ")
        if ignored:
            headers[IGNORED_HEADER] = ", ".join(dict.fromkeys(ignored))[:4000]
        chunks = _chunks(reply)
        if request.stream:
            return ResponsesReply(events=_events(builder, chunks, remember), headers=headers)
        try:
            async for chunk in chunks:
                builder.feed(chunk)
        finally:
            await _close(chunks)
        builder.finish()
        remember()
        return ResponsesReply(body=builder.response, headers=headers)

    async def _chat(self, plan: ChatPlan, context: RequestContext) -> tuple[ChatBackend, Reply]:
        """The backend of the plan's model and its reply; a 400 names the Responses field."""
        try:
            chat = validate_object(ChatCompletionRequest, plan.chat, strict=True)
            backend = self.catalogue.resolve(chat.request.model)
            for name in backend.unsupported(chat.request):
                raise UnsupportedParameter(
                    f"'{name}' is not supported by the model '{backend.card.id}'", param=name
                )
            return backend, await backend.chat(chat, context)
        except InvalidRequestError as exc:
            exc.param = rename_param(exc.param, plan.origins)
            raise


def _chunks(reply: Reply) -> AsyncIterator[Any]:
    if reply.stream is not None:
        return reply.stream
    return _iterate(chunks_of_body(dict(reply.body or {})))


async def _iterate(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def _events(
    builder: ResponseBuilder, chunks: AsyncIterator[Any], remember: Any
) -> AsyncIterator[Event]:
    try:
        for event in builder.start():
            yield event
        try:
            async for chunk in chunks:
                for event in builder.feed(chunk):
                    yield event
        except PamperoError as exc:
            for event in builder.fail(exc):
                yield event
            return
        final = builder.finish()
        remember()  # before the last event: a client may chain on it at once
        for event in final:
            yield event
    finally:
        await _close(chunks)


async def _close(chunks: AsyncIterator[Any]) -> None:
    closer = getattr(chunks, "aclose", None)
    if closer is not None:
        await closer()


def _skeleton(request: CreateResponseRequest, model: str) -> dict[str, Any]:
    """The Response object before any output: what the request asked for, echoed."""
    text_format: dict[str, Any] = {"type": "text"}
    verbosity = None
    if request.text is not None:
        verbosity = request.text.verbosity
        if request.text.format is not None:
            text_format = request.text.format.model_dump(by_alias=True, exclude_none=True)
    choice: Any = request.tool_choice or "auto"
    if isinstance(choice, NamedFunction):
        choice = {"type": "function", "name": choice.name}
    reasoning = None
    if request.reasoning is not None:
        reasoning = {"effort": request.reasoning.effort, "summary": request.reasoning.summary}
    response: dict[str, Any] = {
        "id": new_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": False,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "reasoning": reasoning,
        "service_tier": "default",
        "store": request.store,
        "temperature": request.temperature,
        "text": {"format": text_format, "verbosity": verbosity},
        "tool_choice": choice,
        "tools": [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "strict": tool_strict(tool),
            }
            for tool in request.tools or ()
        ],
        "top_logprobs": request.top_logprobs or 0,
        "top_p": request.top_p,
        "truncation": "disabled",
        "metadata": request.metadata or {},
    }
    if request.user is not None:
        response["user"] = request.user
    return response
