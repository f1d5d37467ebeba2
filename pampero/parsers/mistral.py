"""Mistral tool calls, in both of the shapes Mistral's tokenizers have used.

    [TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}]
    [TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}
    [TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Paris"}

The first is Mistral-7B-Instruct-v0.3 and the other pre-v11 tokenizers (a JSON list, or a
single object, after ``[TOOL_CALLS]``); the second is v11 and later (Mistral Small 3.2,
Devstral, Ministral 3), one ``[TOOL_CALLS]`` per call, with ``[CALL_ID]`` in v11 only. When
``[ARGS]`` was decoded away (``[TOOL_CALLS]get_weather{...}``) the ``{`` ends the name. Text
before ``[TOOL_CALLS]`` is content. After a call whose JSON broke, the text up to the next
``[TOOL_CALLS]`` or the end is the rest of that call, and dropped. Ids the model writes are not
used: every call gets a ``call_`` id like any other parser's.
"""

from __future__ import annotations

import re

from pampero.parsers.base import IdFactory, ParsedDelta, new_call_id
from pampero.parsers.calls import (
    ArgumentsReader,
    CallReader,
    ToolParserBase,
    partial_suffix,
    skip_blank,
)

BOT = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
_NAME = re.compile(r"[\w.\-]*")
_NAME_CHAR = re.compile(r"[\w.\-]")

_TEXT = 0
_BOT = 1  # after [TOOL_CALLS]
_LIST = 2  # inside the pre-v11 list, between calls
_OBJECT = 3  # a {"name": ..., "arguments": ...} object
_FUNCTION = 4  # a v11 name, up to [CALL_ID], [ARGS] or "{"
_CALL_ID = 5  # a v11 call id, up to [ARGS] or "{"
_ARGUMENTS = 6  # a v11 arguments value
_SKIP = 7  # the rest of a broken call, up to the next [TOOL_CALLS]


class MistralToolParser(ToolParserBase):
    """``[TOOL_CALLS]`` calls, list or ``name[ARGS]{...}`` form; see the module docstring."""

    markers = (BOT, ARGS, CALL_ID)

    def __init__(self, *, id_factory: IdFactory = new_call_id) -> None:
        super().__init__(id_factory=id_factory)
        self._state = _TEXT
        self._buf = ""
        self._region: list[str] = []
        self._reader: CallReader | None = None
        self._args: ArgumentsReader | None = None
        self._name = ""
        self._in_list = False

    def feed(self, text: str) -> ParsedDelta:
        self._buf += text
        while self._step():
            pass
        return self._emit()

    def finish(self) -> ParsedDelta:
        while self._step():
            pass
        buf, self._buf = self._buf, ""
        state = self._state
        if state == _TEXT:
            self._content(buf)
        elif state == _OBJECT and self._reader is not None:
            self._reader.finish()
            if self._reader.confirmed:
                self._stream_call(self._reader)
                self._end_object(self._reader)
            else:
                self._reject(buf)
        elif state == _ARGUMENTS and self._args is not None:
            self._end_arguments(self._args)
        elif state == _LIST and not self._region:
            self._content(buf)  # blanks after the list's last complete call
        elif state != _SKIP:
            self._reject(buf)
        self._finish_content()
        return self._emit()

    def _step(self) -> bool:
        state = self._state
        if state == _TEXT:
            return self._text()
        if state == _OBJECT:
            return self._object()
        if state == _ARGUMENTS:
            return self._arguments_value()
        if state in (_FUNCTION, _CALL_ID):
            return self._function()
        if state == _SKIP:
            return self._skip()
        return self._between()

    def _between(self) -> bool:
        """Right after ``[TOOL_CALLS]``, or inside the list between its calls."""
        state = self._state
        buf = self._buf
        pos = skip_blank(buf, 0)
        if pos == len(buf):
            return False
        first = buf[pos]
        self._region.append(buf[:pos])
        self._buf = buf[pos:]
        if state == _BOT and first == "[":
            self._region.append(first)
            self._buf = self._buf[1:]
            self._in_list = True
            self._state = _LIST
        elif first == "{" and (state == _BOT or self._in_list):
            self._reader = CallReader()
            self._state = _OBJECT
        elif state == _BOT and _NAME_CHAR.match(first) is not None:
            self._name = ""
            self._state = _FUNCTION
        elif state == _LIST and first in ",]":
            self._region.clear()
            self._buf = self._buf[1:]
            if first == "]":
                self._in_list = False
                self._state = _TEXT
        else:
            self._reject("")
        return True

    def _text(self) -> bool:
        buf = self._buf
        start = buf.find(BOT)
        if start < 0:
            cut = len(buf) - partial_suffix(buf, BOT)
            self._content(buf[:cut])
            self._buf = buf[cut:]
            return False
        self._content(buf[:start])
        self._region = [self._take_blank(), BOT]
        self._buf = buf[start + len(BOT) :]
        self._state = _BOT
        return True

    def _object(self) -> bool:
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
            self._reject("")
        else:
            self._end_object(reader)
        return True

    def _function(self) -> bool:
        """A v11 call's name, then its optional call id, up to the arguments."""
        buf = self._buf
        run = _NAME.match(buf)
        assert run is not None
        if self._state == _FUNCTION:
            self._name += run.group()
        self._region.append(run.group())
        rest = buf[run.end() :]
        self._buf = rest
        if not rest:
            return False
        markers = (ARGS, CALL_ID) if self._state == _FUNCTION else (ARGS,)
        for marker in markers:
            if rest.startswith(marker):
                self._region.append(marker)
                self._buf = rest[len(marker) :]
                if marker == CALL_ID:
                    self._state = _CALL_ID
                    return True
                return self._begin_arguments()
            if marker.startswith(rest):
                return False
        if rest[0] == "{":
            return self._begin_arguments()
        self._reject("")
        return True

    def _begin_arguments(self) -> bool:
        if not self._name:
            self._reject("")
            return True
        self._begin_call(self._name)
        self._region.clear()
        self._args = ArgumentsReader()
        self._state = _ARGUMENTS
        return True

    def _arguments_value(self) -> bool:
        args = self._args
        assert args is not None
        buf = self._buf
        pos = args.feed(buf)
        self._buf = buf[pos:]
        self._arguments(args.take())
        if not args.ended:
            return False
        self._end_arguments(args)
        return True

    def _skip(self) -> bool:
        buf = self._buf
        start = buf.find(BOT)
        if start < 0:
            self._buf = buf[len(buf) - partial_suffix(buf, BOT) :]
            return False
        self._buf = buf[start:]
        self._state = _TEXT
        return True

    def _end_arguments(self, args: ArgumentsReader) -> None:
        self._state = _SKIP if args.failed else _TEXT
        self._arguments(args.close())
        self._args = None
        self._name = ""

    def _end_object(self, reader: CallReader) -> None:
        if reader.broken:
            self._in_list = False
            self._state = _SKIP
        else:
            self._state = _LIST if self._in_list else _TEXT
        self._arguments(reader.close_arguments())
        self._reader = None
        self._region.clear()

    def _reject(self, rest: str) -> None:
        """Not a call after all: its text so far is content."""
        self._content("".join(self._region) + rest)
        self._region.clear()
        self._reader = None
        self._in_list = False
        self._name = ""
        self._state = _TEXT
