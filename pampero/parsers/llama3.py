"""Llama 3.x JSON tool calls (Llama 3.1, 3.2, 3.3 with their JSON tool-calling prompt).

    {"name": "get_weather", "parameters": {"city": "Paris"}}
    <|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}
    {"name": "a", "parameters": {}}; {"name": "b", "parameters": {}}

A call is a JSON object that begins the output (after blanks) or follows ``<|python_tag|>``;
further calls follow it, separated by ``;`` or blanks. Like llama.cpp, and unlike a bare
"find any JSON" scan, an object is a call only if it reads ``{"name": "...", "parameters":``
(``"arguments"`` is accepted for ``"parameters"``, and a leading ``"type": "function"``
member is allowed): an answer that merely is JSON (``response_format``) stays content. So
does JSON after prose, and ``<|python_tag|>`` followed by anything but such an object
(Llama's built-in ``brave_search.call(...)`` tools are not parsed). After a call whose JSON
broke, the text up to the next ``<|python_tag|>`` or the end is the rest of that call, and
dropped.
"""

from __future__ import annotations

from typing import Any

from pampero.parsers.base import IdFactory, new_call_id
from pampero.parsers.calls import OPEN, SKIP, TEXT, CallReader, ToolParserBase, skip_blank
from pampero.parsers.grammar import calls_schema
from pampero.parsers.jsonscan import WHITESPACE

PYTHON_TAG = "<|python_tag|>"

_BEGIN = 4  # start of output: a JSON call may begin here
_AFTER = 5  # after a call: ";", another call, or text


class Llama3JsonToolParser(ToolParserBase):
    """``{"name": ..., "parameters": {...}}`` calls; see the module docstring."""

    markers = (PYTHON_TAG,)
    start_marker = PYTHON_TAG
    call_start = PYTHON_TAG
    bare_call_gap = WHITESPACE + ";"

    @classmethod
    def call_rules(
        cls,
        functions: list[dict[str, Any]],
        *,
        strict_only: bool,
        parallel: bool,
        bare: bool = False,
    ) -> str:
        one = f"%json {calls_schema(functions, 'parameters', strict_only=strict_only)}"
        calls = 'call_one ("; " call_one)*' if parallel else "call_one"
        return f"calls: {calls}\ncall_one: {one}\n"

    @classmethod
    def call_grammar(cls, functions: list[dict[str, Any]], *, opened: bool) -> str:
        return f"start: %json {calls_schema(functions, 'parameters', strict_only=True)}\n"

    def __init__(self, *, id_factory: IdFactory = new_call_id) -> None:
        super().__init__(id_factory=id_factory)
        self._state = _BEGIN

    def _step_format(self) -> bool:
        if self._state == OPEN:
            return self._open(strict=True)
        buf = self._buf
        pos = skip_blank(buf, 0)
        if pos == len(buf):
            return False
        first = buf[pos]
        if first == ";" and self._state == _AFTER:
            self._content(buf[:pos])
            self._buf = buf[pos + 1 :]
            return True
        if first == "{":
            self._content(buf[:pos])
            self._region = [self._take_blank()]
            self._buf = buf[pos:]
            self._start_call(strict=True)
            return True
        self._state = TEXT
        return True

    def _flush_format(self, rest: str) -> None:
        self._content(rest)

    def _after_call(self, reader: CallReader) -> int:
        return SKIP if reader.broken else _AFTER
