"""A strict reader for OpenAI-style server-sent events, and the framing rules of their streams.

OpenAI frames every event as exactly ``data: <one line of JSON>\\n\\n`` and ends the stream with
``data: [DONE]\\n\\n``: no comments, no ``event:``/``id:`` lines, no keep-alives. ``parse_events``
checks the raw bytes against that, so a stray newline, a missing ``[DONE]`` or an in-band error
event fails the test that read them. ``chat_stream`` and ``completion_stream`` then check how the
chunks of one response fit together and give back what each choice said.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

DONE = b"data: [DONE]\n\n"


@dataclass
class RawStream:
    """One streamed HTTP response, as received."""

    status: int
    headers: httpx.Headers
    raw: bytes

    @property
    def events(self) -> list[dict[str, Any]]:
        return parse_events(self.raw)


def read(client: httpx.Client, path: str, body: dict[str, Any]) -> RawStream:
    """POST ``body`` and read the whole response body as raw bytes."""
    with client.stream("POST", path, json=body) as response:
        raw = b"".join(response.iter_raw())
        return RawStream(response.status_code, response.headers, raw)


def next_data(lines: Iterator[str]) -> str:
    """The next non-blank line of a response's ``iter_lines()``. Keep that iterator referenced
    while the stream should stay open: httpx closes the connection when it is discarded."""
    for line in lines:
        if line:
            return line
    raise AssertionError("the stream ended early")


def parse_events(raw: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of ``raw``, checked frame by frame (see the module docstring)."""
    assert raw.endswith(DONE), f"the stream does not end with 'data: [DONE]': ...{raw[-300:]!r}"
    body = raw[: -len(DONE)]
    assert DONE not in body, "'data: [DONE]' is not the last event"
    assert not body or body.endswith(b"\n\n"), f"a frame is not closed by a blank line: {raw!r}"
    events: list[dict[str, Any]] = []
    for frame in body.split(b"\n\n")[:-1]:
        assert frame.startswith(b"data: "), f"not a 'data: ' frame: {frame[:200]!r}"
        payload = frame[len(b"data: ") :]
        assert b"\n" not in payload and b"\r" not in payload, f"multi-line frame: {frame!r}"
        event = json.loads(payload)
        assert isinstance(event, dict), f"an event is not a JSON object: {frame[:200]!r}"
        assert "error" not in event, f"in-band error event: {event['error']}"
        events.append(event)
    return events


@dataclass
class Choice:
    """What one streamed choice said."""

    text: str = ""
    reasoning: str = ""  # vLLM's reasoning_content deltas, concatenated
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    logprobs: list[Any] = field(default_factory=list)


@dataclass
class StreamResult:
    choices: dict[int, Choice]
    usage: dict[str, Any] | None
    events: list[dict[str, Any]] = field(default_factory=list)  # every chunk, in order

    def texts(self) -> list[str]:
        return [self.choices[i].text for i in sorted(self.choices)]


def _envelope(events: list[dict[str, Any]], obj: str) -> None:
    first = events[0]
    for event in events:
        assert event["object"] == obj, event
        for key in ("id", "created", "model", "system_fingerprint"):
            assert event.get(key) == first.get(key), f"'{key}' changes within one stream"


def _usage_tail(events: list[dict[str, Any]], include_usage: bool) -> dict[str, Any] | None:
    """Check where usage appears; return the final usage object, if one was asked for."""
    if not include_usage:
        for event in events:
            assert event.get("usage") is None, f"usage sent without include_usage: {event}"
            assert event["choices"], f"an empty-choices chunk without include_usage: {event}"
        return None
    *body, last = events
    assert last["choices"] == [], f"the last chunk before [DONE] is not the usage chunk: {last}"
    usage = last["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    for event in body:
        assert "usage" in event and event["usage"] is None, f"early usage: {event}"
        assert event["choices"], f"an empty-choices chunk before the end: {event}"
    return dict(usage)


def _finish(choice: Choice, index: int, item: dict[str, Any]) -> None:
    assert choice.finish_reason is None, f"choice {index} got a second finish_reason"
    choice.finish_reason = item["finish_reason"]
    choice.stop_reason = item.get("stop_reason")


def chat_stream(events: list[dict[str, Any]], *, n: int = 1, include_usage: bool) -> StreamResult:
    """Check a chat stream's framing: the first chunk of every choice carries
    ``role: assistant`` (and no later one does), content follows, exactly one chunk per choice
    has a ``finish_reason`` and nothing of that choice comes after it; with ``include_usage``
    one final chunk has ``choices: []`` and the usage."""
    assert events, "no chunk before [DONE]"
    _envelope(events, "chat.completion.chunk")
    usage = _usage_tail(events, include_usage)
    choices: dict[int, Choice] = {}
    for event in events:
        for item in event["choices"]:
            index, delta = item["index"], item["delta"]
            if index not in choices:
                assert delta.get("role") == "assistant", f"choice {index} starts with {delta}"
                choices[index] = Choice()
            else:
                assert "role" not in delta, f"a second role for choice {index}: {delta}"
            choice = choices[index]
            assert choice.finish_reason is None, f"choice {index} continues after finishing"
            choice.text += delta.get("content") or ""
            choice.reasoning += delta.get("reasoning_content") or ""
            if item.get("logprobs"):
                choice.logprobs.extend(item["logprobs"]["content"])
            if item["finish_reason"] is not None:
                _finish(choice, index, item)
    assert sorted(choices) == list(range(n)), f"choice indices {sorted(choices)} for n={n}"
    for index, choice in choices.items():
        assert choice.finish_reason is not None, f"choice {index} never finished"
    return StreamResult(choices, usage, events)


def completion_stream(
    events: list[dict[str, Any]], *, n: int = 1, include_usage: bool
) -> StreamResult:
    """Check a /v1/completions stream's framing (as ``chat_stream``, with ``text`` deltas)."""
    assert events, "no chunk before [DONE]"
    _envelope(events, "text_completion")
    usage = _usage_tail(events, include_usage)
    choices: dict[int, Choice] = {}
    for event in events:
        for item in event["choices"]:
            index = item["index"]
            choice = choices.setdefault(index, Choice())
            assert choice.finish_reason is None, f"choice {index} continues after finishing"
            choice.text += item["text"]
            if item["finish_reason"] is not None:
                _finish(choice, index, item)
    assert sorted(choices) == list(range(n)), f"choice indices {sorted(choices)} for n={n}"
    for index, choice in choices.items():
        assert choice.finish_reason is not None, f"choice {index} never finished"
    return StreamResult(choices, usage)
