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

from pampero.parsers.base import IdFactory, ParsedDelta, new_call_id
from pampero.parsers.calls import CallReader, ToolParserBase, partial_suffix, skip_blank

START = "<tool_call>"
END = "</tool_call>"

_TEXT = 0
_OPEN = 1  # after <tool_call>, before the JSON
_CALL = 2
_CLOSE = 3  # after the JSON, before </tool_call>
_BEGIN = 4  # start of output: a bare call object may begin here
_FENCES = ("```json\n", "```\n")


class HermesToolParser(ToolParserBase):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; see the module docstring."""

    markers = (START, END)

    def __init__(self, *, id_factory: IdFactory = new_call_id) -> None:
        super().__init__(id_factory=id_factory)
        self._state = _BEGIN
        self._buf = ""  # text not consumed yet: a partial marker, or input for the next state
        self._region: list[str] = []  # raw text of a call not confirmed yet, for a fallback
        self._reader: CallReader | None = None
        self._junk: list[str] = []  # after a call's JSON, before </tool_call>
        self._broken = False  # the last call's JSON broke: its junk is dropped, never content
        self._fenced = False  # a bare call came inside a Markdown code fence

    def feed(self, text: str) -> ParsedDelta:
        self._buf += text
        while self._step():
            pass
        return self._emit()

    def finish(self) -> ParsedDelta:
        while self._step():
            pass
        buf, self._buf = self._buf, ""
        if self._state == _CALL and self._reader is not None:
            self._reader.finish()
            if self._reader.confirmed:
                self._stream_call(self._reader)
                self._end_call(self._reader)
            else:
                self._region.append(buf)
                self._reject()
        elif self._state == _OPEN:
            self._region.append(buf)
            self._reject()
        elif self._state == _BEGIN:
            self._content(buf)
        elif self._state == _CLOSE:
            junk = "".join(self._junk)
            if self._fenced and (junk + buf).strip() in ("```", ""):
                pass  # the closing fence of a fenced bare call is markup
            elif not self._broken:
                self._content(junk if END.startswith(buf) else junk + buf)
        else:
            self._content(buf)
        self._finish_content()
        return self._emit()

    def _step(self) -> bool:
        """Advance by one state; False when more text is needed."""
        if self._state == _TEXT:
            return self._text()
        if self._state == _BEGIN:
            return self._begin()
        if self._state == _OPEN:
            return self._open()
        if self._state == _CALL:
            return self._call()
        return self._close()

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
            self._state = _TEXT
            return True
        self._fenced = bool(fence)
        self._region = [buf[:start]]
        self._buf = buf[start:]
        self._reader = CallReader(strict=True)
        self._state = _CALL
        return True

    def _text(self) -> bool:
        buf = self._buf
        start = buf.find(START)
        if start < 0:
            cut = len(buf) - partial_suffix(buf, START)
            self._content(buf[:cut])
            self._buf = buf[cut:]
            return False
        self._content(buf[:start])
        self._region = [self._take_blank(), START]
        self._buf = buf[start + len(START) :]
        self._state = _OPEN
        return True

    def _open(self) -> bool:
        buf = self._buf
        pos = skip_blank(buf, 0)
        self._region.append(buf[:pos])
        self._buf = buf[pos:]
        if not self._buf:
            return False
        if self._buf[0] == "{":
            self._reader = CallReader()
            self._state = _CALL
        else:
            self._reject()
        return True

    def _call(self) -> bool:
        reader = self._reader
        assert reader is not None
        buf = self._buf
        pos = reader.feed(buf)
        self._buf = buf[pos:]
        if reader.confirmed:
            self._region.clear()
        else:
            self._region.append(buf[:pos])
        self._stream_call(reader)
        if not reader.ended:
            return False
        if reader.rejected:
            self._reject()
        else:
            self._end_call(reader)
        return True

    def _close(self) -> bool:
        buf = self._buf
        end = buf.find(END)
        start = buf.find(START)
        if end >= 0 and (start < 0 or end < start):
            self._junk.clear()
            self._buf = buf[end + len(END) :]
            self._state = _TEXT
            return True
        if start >= 0:  # the next call began without closing this one
            if not self._broken:
                self._content("".join(self._junk) + buf[:start])
            self._junk.clear()
            self._buf = buf[start:]
            self._state = _TEXT
            return True
        cut = len(buf) - max(partial_suffix(buf, END), partial_suffix(buf, START))
        self._junk.append(buf[:cut])
        self._buf = buf[cut:]
        return False

    def _end_call(self, reader: CallReader) -> None:
        self._broken = reader.broken
        self._arguments(reader.close_arguments())
        self._reader = None
        self._region.clear()
        self._state = _CLOSE

    def _reject(self) -> None:
        """Not a call after all: its text so far is content."""
        self._content("".join(self._region))
        self._region.clear()
        self._reader = None
        self._state = _TEXT
