"""Chat completion chunks turned into a Response object and its stream events.

``ResponseBuilder`` reads the chunks of one chat completion and answers with the events
OpenAI's Responses API streams, in its order, each with a ``sequence_number``::

    response.created, response.in_progress,
      per output item: response.output_item.added,
        message:   response.content_part.added, response.output_text.delta...,
                   response.output_text.done, response.content_part.done
        reasoning: response.content_part.added, response.reasoning_text.delta...,
                   response.reasoning_text.done, response.content_part.done
        call:      response.function_call_arguments.delta..., ...arguments.done
      response.output_item.done,
    response.completed (or response.incomplete when cut by max_output_tokens)

A non-streamed response is the same events folded (``builder.response``), so the two cannot
disagree. The builder only builds dicts; the HTTP edge frames them.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from pampero.errors import PamperoError, RateLimited, UpstreamError, UpstreamTimeout

Event = dict[str, Any]

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _in_band(error: Any) -> PamperoError:
    """A stream's in-band ``{"error": ...}`` as the error it reports."""
    error = error if isinstance(error, dict) else {"message": str(error)}
    message = str(error.get("message") or "the stream failed")
    code = error.get("code")
    kind = UpstreamTimeout if code == "upstream_timeout" else UpstreamError
    return kind(message, code=None if code is None else str(code))


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def usage_body(chat_usage: dict[str, Any]) -> dict[str, Any]:
    """A chat completion's ``usage`` in the Responses API's shape."""
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(cached), "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(reasoning)},
        "total_tokens": prompt + completion,
    }


class _Open:
    """The output item receiving deltas, and what closes it."""

    def __init__(self, kind: str, item: dict[str, Any], index: int, key: int | None = None):
        self.kind = kind  # "message", "reasoning" or "function_call"
        self.item = item
        self.index = index
        self.key = key  # the chat tool call index, for a function call
        self.text: list[str] = []
        self.logprobs: list[dict[str, Any]] = []


class ResponseBuilder:
    """Builds one Response from chat chunks; see the module docstring.

    ``response`` is the Response object as it stands (its ``output`` grows as items close).
    """

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.sequence = 0
        self.open: _Open | None = None
        self.finish_reason: str | None = None
        # Token logprobs read but not yet given to output text (``include`` asked for them).
        self.pending_logprobs: list[dict[str, Any]] = []

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def _snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.response)

    def start(self) -> list[Event]:
        return [
            self._event("response.created", response=self._snapshot()),
            self._event("response.in_progress", response=self._snapshot()),
        ]

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """The events of one chat completion chunk. A chunk carrying ``error`` (a router's
        stream that failed after it committed) raises it: the response fails, never completes."""
        if "error" in chunk:
            raise _in_band(chunk["error"])
        events: list[Event] = []
        usage = chunk.get("usage")
        if usage:
            self.response["usage"] = usage_body(usage)
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            self.pending_logprobs += [
                _logprob(entry) for entry in (choice.get("logprobs") or {}).get("content") or ()
            ]
            if reasoning:
                self.pending_logprobs.clear()
                events += self._text("reasoning", reasoning)
            if delta.get("content"):
                events += self._text("message", delta["content"])
            for call in delta.get("tool_calls") or ():
                self.pending_logprobs.clear()
                events += self._call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[Event]:
        """Close the open item and end the response: completed, or incomplete."""
        reason = _INCOMPLETE.get(self.finish_reason or "")
        events = self._close("incomplete" if reason else "completed")
        self.response["status"] = "incomplete" if reason else "completed"
        if reason:
            self.response["incomplete_details"] = {"reason": reason}
        else:
            self.response["completed_at"] = int(time.time())
        kind = "response.incomplete" if reason else "response.completed"
        events.append(self._event(kind, response=self._snapshot()))
        return events

    def fail(self, error: PamperoError) -> list[Event]:
        """The in-band end of a stream that failed after it started."""
        code = "rate_limit_exceeded" if isinstance(error, RateLimited) else "server_error"
        events = [self._event("error", code=error.code, message=error.message, param=error.param)]
        self.open = None
        self.response["status"] = "failed"
        self.response["error"] = {"code": code, "message": error.message}
        events.append(self._event("response.failed", response=self._snapshot()))
        return events

    def _open_item(self, kind: str, item: dict[str, Any], key: int | None = None) -> list[Event]:
        events = self._close("completed")
        index = len(self.response["output"])
        self.response["output"].append(item)
        self.open = _Open(kind, item, index, key)
        events.append(
            self._event("response.output_item.added", output_index=index, item=copy.deepcopy(item))
        )
        if kind != "function_call":
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=_part(kind, ""),
                )
            )
        return events

    def _text(self, kind: str, text: str) -> list[Event]:
        events: list[Event] = []
        if self.open is None or self.open.kind != kind:
            if kind == "message":
                item = {
                    "id": new_id("msg"),
                    "type": "message",
                    "role": "assistant",
                    "status": "in_progress",
                    "content": [],
                }
            else:
                item = {
                    "id": new_id("rs"),
                    "type": "reasoning",
                    "summary": [],
                    "content": [],
                    "status": "in_progress",
                }
            events += self._open_item(kind, item)
        assert self.open is not None
        self.open.text.append(text)
        fields: dict[str, Any] = {}
        if kind == "message":
            fields["logprobs"], self.pending_logprobs = self.pending_logprobs, []
            self.open.logprobs += fields["logprobs"]
        name = (
            "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        )
        events.append(
            self._event(
                name,
                item_id=self.open.item["id"],
                output_index=self.open.index,
                content_index=0,
                delta=text,
                **fields,
            )
        )
        return events

    def _call(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        key = int(call.get("index", 0))
        function = call.get("function") or {}
        if self.open is None or self.open.kind != "function_call" or self.open.key != key:
            item = {
                "id": new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": call.get("id") or new_id("call"),
                "name": function.get("name") or "",
            }
            events += self._open_item("function_call", item, key)
        assert self.open is not None
        arguments = function.get("arguments") or ""
        if arguments:
            self.open.text.append(arguments)
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=self.open.item["id"],
                    output_index=self.open.index,
                    delta=arguments,
                )
            )
        return events

    def _close(self, status: str) -> list[Event]:
        current, self.open = self.open, None
        if current is None:
            return []
        item, index, text = current.item, current.index, "".join(current.text)
        item["status"] = status
        events: list[Event] = []
        if current.kind == "function_call":
            item["arguments"] = text
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=text,
                )
            )
        else:
            part = _part(current.kind, text)
            item["content"] = [part]
            if current.kind == "message":
                done = "response.output_text.done"
                part["logprobs"] = current.logprobs
                extra: dict[str, Any] = {"logprobs": copy.deepcopy(current.logprobs)}
            else:
                done, extra = "response.reasoning_text.done", {}
            position = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append(self._event(done, text=text, **position, **extra))
            events.append(
                self._event("response.content_part.done", part=copy.deepcopy(part), **position)
            )
        events.append(
            self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item))
        )
        return events


def _logprob(entry: dict[str, Any]) -> dict[str, Any]:
    """A chat completion's token logprob in the Responses API's shape (``bytes`` required)."""

    def one(item: dict[str, Any]) -> dict[str, Any]:
        token = str(item.get("token", ""))
        raw = item.get("bytes")
        return {
            "token": token,
            "logprob": item.get("logprob"),
            "bytes": list(raw) if raw is not None else list(token.encode()),
        }

    return {**one(entry), "top_logprobs": [one(top) for top in entry.get("top_logprobs") or ()]}


def _part(kind: str, text: str) -> dict[str, Any]:
    if kind == "message":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "reasoning_text", "text": text}


def output_text(response: dict[str, Any]) -> str:
    """The text of every output message, joined (what the SDKs call ``output_text``)."""
    return "".join(
        part.get("text", "")
        for item in response.get("output", ())
        if item.get("type") == "message"
        for part in item.get("content", ())
        if part.get("type") == "output_text"
    )


def chunks_of_body(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole chat completion as the chunks that would have streamed it, for a backend that
    answered a streamed request with a body."""
    chunks: list[dict[str, Any]] = []
    for choice in body.get("choices") or ():
        message = dict(choice.get("message") or {})
        calls = [
            {**call, "index": position}
            for position, call in enumerate(message.pop("tool_calls", None) or ())
        ]
        delta = {key: value for key, value in message.items() if value is not None}
        if calls:
            delta["tool_calls"] = calls
        chunks.append(
            {
                "choices": [
                    {
                        "index": choice.get("index", 0),
                        "delta": delta,
                        "logprobs": choice.get("logprobs"),
                        "finish_reason": choice.get("finish_reason"),
                    }
                ]
            }
        )
    if body.get("usage"):
        chunks.append({"choices": [], "usage": body["usage"]})
    return chunks
