"""Hermes-style tool calls, as written by Qwen2.5, Qwen3 and the Hermes models.

    Let me look that up.
    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>
    <tool_call>
    {"name": "get_time", "arguments": {"tz": "Europe/Paris"}}
    </tool_call>

Several calls in a row are parallel calls. Text outside the tags is content. Handled the way
models actually slip: keys in any order (``arguments`` before ``name``), ``parameters`` for
``arguments``, arguments written as a JSON string, a missing ``</tool_call>`` (the next
``<tool_call>`` or the end of generation closes the call), and stray text between the JSON and
``</tool_call>`` (it belongs to the markup and is dropped; without a ``</tool_call>`` after it,
it is content). After a call whose JSON broke, everything up to ``</tool_call>``, the next
``<tool_call>`` or the end is the rest of that call, and dropped. A tag whose body is not a JSON
object with a name (``<tool_call>get_weather(city="Paris")</tool_call>``) stays content,
verbatim.

Small Qwen2.5 models often drop the tags and answer with the bare call object. As llama.cpp's
Hermes parser does, an output that *begins* (after blanks) with ``{"name": ..., "arguments":``
is read as a call; in strict form only (name first, then the arguments key), so an answer that
merely is JSON stays content. A Markdown fence around that object (```` ```json ````) is markup
too, and dropped.
"""

from __future__ import annotations

from typing import Any

from pampero.parsers.base import IdFactory, new_call_id
from pampero.parsers.calls import (
    OPEN,
    TEXT,
    CallReader,
    ToolParserBase,
    partial_suffix,
    skip_blank,
)
from pampero.parsers.grammar import calls_schema, lark_literal
from pampero.parsers.jsonscan import WHITESPACE

START = "<tool_call>"
END = "</tool_call>"

_CLOSE = 4  # after the JSON, before </tool_call>
_BEGIN = 5  # start of output: a bare call object may begin here
_FENCES = ("```json\n", "```\n")
_FENCE_END = "\n```"
_OPENING = lark_literal(START + "\n")  # how grammars write the markup
_CLOSING = lark_literal("\n" + END)


class HermesToolParser(ToolParserBase):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; see the module docstring."""

    markers = (START, END)
    start_marker = START
    call_start = START
    bare_call_gap = WHITESPACE

    @classmethod
    def call_rules(
        cls,
        functions: list[dict[str, Any]],
        *,
        strict_only: bool,
        parallel: bool,
        bare: bool = False,
    ) -> str:
        schema = calls_schema(functions, "arguments", strict_only=strict_only)
        rules = f"call_object: %json {schema}\ncall_one: {_OPENING} call_object {_CLOSING}\n"
        tagged = 'call_one ("\\n" call_one)*' if parallel else "call_one"
        if not bare:
            return f"calls: {tagged}\n{rules}"
        # Also the bare forms this parser reads: Qwen2.5 answers many requests with a
        # pretty-printed call object, often in a ```json fence, and forcing the tag on it
        # changes what it writes (BFCL: it copied the schema into the arguments).
        objects = 'call_object ("\\n" call_object)*' if parallel else "call_object"
        opened, closed = lark_literal(_FENCES[0]), lark_literal(_FENCE_END)
        return (
            f"calls: {tagged} | call_bare | {opened} call_bare {closed}\n"
            f"call_bare: {objects}\n{rules}"
        )

    @classmethod
    def call_grammar(cls, functions: list[dict[str, Any]], *, opened: bool) -> str:
        schema = calls_schema(functions, "arguments", strict_only=True)
        if not opened:
            return f"start: %json {schema}\n"
        return f'start: "\\n" %json {schema} {_CLOSING}\n'

    def __init__(self, *, id_factory: IdFactory = new_call_id) -> None:
        super().__init__(id_factory=id_factory)
        self._state = _BEGIN
        self._junk: list[str] = []  # after a call's JSON, before </tool_call>
        self._broken = False  # the last call's JSON broke: its junk is dropped, never content
        self._fenced = False  # a bare call came inside a Markdown code fence

    def _step_format(self) -> bool:
        if self._state == _BEGIN:
            return self._begin()
        if self._state == OPEN:
            return self._open(strict=False)
        return self._close()

    def _flush_format(self, rest: str) -> None:
        if self._state != _CLOSE:
            self._content(rest)
            return
        junk = "".join(self._junk)
        if self._fenced and (junk + rest).strip() in ("```", ""):
            pass  # the closing fence of a fenced bare call is markup
        elif not self._broken:
            self._content(junk if END.startswith(rest) else junk + rest)

    def _after_call(self, reader: CallReader) -> int:
        self._broken = reader.broken
        return _CLOSE

    def _next_bare_call(self) -> bool:
        """Right after a call's JSON: another call written bare (``{``) right after it, or the
        closing fence of a fenced one, then maybe another. False: not decided here."""
        buf = self._buf
        pos = skip_blank(buf, 0)
        rest = buf[pos:]
        if self._fenced and rest.startswith("```"):
            self._buf = rest[3:]
            self._state = _BEGIN
            return True
        if rest.startswith("{") and not self._broken:
            self._region = [buf[:pos]]
            self._buf = rest
            self._start_call(strict=True)
            return True
        return False

    def _begin(self) -> bool:
        buf = self._buf
        pos = skip_blank(buf, 0)
        if pos == len(buf):
            return False
        rest = buf[pos:]
        if any(f.startswith(rest) for f in _FENCES):
            return False  # maybe a fence: wait for its whole line
        fence = next((f for f in _FENCES if rest.startswith(f)), "")
        start = skip_blank(buf, pos + len(fence))
        if start == len(buf):
            return False
        if buf[start] != "{":
            self._state = TEXT
            return True
        self._fenced = bool(fence)
        self._region = [buf[:start]]
        self._buf = buf[start:]
        self._start_call(strict=True)
        return True

    def _close(self) -> bool:
        buf = self._buf
        if not self._junk:
            rest = buf[skip_blank(buf, 0) :]
            if not rest or (self._fenced and "```".startswith(rest)):
                return False  # blanks (or a fence) so far: what follows decides
            if self._next_bare_call():
                return True
        end = buf.find(END)
        start = buf.find(START)
        if end >= 0 and (start < 0 or end < start):
            self._junk.clear()
            self._buf = buf[end + len(END) :]
            self._state = _BEGIN  # calls in a row: the next may be bare
            return True
        if start >= 0:  # the next call began without closing this one
            if not self._broken:
                self._content("".join(self._junk) + buf[:start])
            self._junk.clear()
            self._buf = buf[start:]
            self._state = TEXT
            return True
        cut = len(buf) - max(partial_suffix(buf, END), partial_suffix(buf, START))
        self._junk.append(buf[:cut])
        self._buf = buf[cut:]
        return False
