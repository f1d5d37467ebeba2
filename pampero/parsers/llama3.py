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

from pampero.parsers.base import IdFactory, ParsedDelta, new_call_id
from pampero.parsers.calls import CallReader, ToolParserBase, partial_suffix, skip_blank

PYTHON_TAG = "<|python_tag|>"

_BEGIN = 0  # start of output: a JSON call may begin here
_TEXT = 1
_OPEN = 2  # after <|python_tag|>
_CALL = 3
_AFTER = 4  # after a call: ";", another call, or text
_SKIP = 5  # the rest of a broken call, up to the next <|python_tag|>


class Llama3JsonToolParser(ToolParserBase):
    """``{"name": ..., "parameters": {...}}`` calls; see the module docstring."""

    markers = (PYTHON_TAG,)

    def __init__(self, *, id_factory: IdFactory = new_call_id) -> None:
        super().__init__(id_factory=id_factory)
        self._state = _BEGIN
        self._buf = ""
        self._region: list[str] = []
        self._reader: CallReader | None = None

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
        elif self._state != _SKIP:
            self._content(buf)
        self._finish_content()
        return self._emit()

    def _step(self) -> bool:
        state = self._state
        if state == _TEXT:
            return self._text()
        if state == _CALL:
            return self._call()
        if state == _SKIP:
            return self._skip()
        buf = self._buf
        pos = skip_blank(buf, 0)
        if pos == len(buf):
            return False
        first = buf[pos]
        if state == _OPEN:
            self._region.append(buf[:pos])
            self._buf = buf[pos:]
            if first == "{":
                self._start_call()
            else:
                self._reject()
            return True
        if first == ";" and state == _AFTER:
            self._content(buf[:pos])
            self._buf = buf[pos + 1 :]
            return True
        if first == "{":
            self._content(buf[:pos])
            self._region = [self._take_blank()]
            self._buf = buf[pos:]
            self._start_call()
            return True
        self._state = _TEXT
        return True

    def _start_call(self) -> None:
        self._reader = CallReader(strict=True)
        self._state = _CALL

    def _text(self) -> bool:
        buf = self._buf
        tag = buf.find(PYTHON_TAG)
        if tag < 0:
            cut = len(buf) - partial_suffix(buf, PYTHON_TAG)
            self._content(buf[:cut])
            self._buf = buf[cut:]
            return False
        self._content(buf[:tag])
        self._region = [self._take_blank(), PYTHON_TAG]
        self._buf = buf[tag + len(PYTHON_TAG) :]
        self._state = _OPEN
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

    def _skip(self) -> bool:
        buf = self._buf
        tag = buf.find(PYTHON_TAG)
        if tag < 0:
            self._buf = buf[len(buf) - partial_suffix(buf, PYTHON_TAG) :]
            return False
        self._buf = buf[tag:]
        self._state = _TEXT
        return True

    def _end_call(self, reader: CallReader) -> None:
        self._state = _SKIP if reader.broken else _AFTER
        self._arguments(reader.close_arguments())
        self._reader = None
        self._region.clear()

    def _reject(self) -> None:
        self._content("".join(self._region))
        self._region.clear()
        self._reader = None
        self._state = _TEXT
