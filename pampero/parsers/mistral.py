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

from pampero.parsers.base import IdFactory, new_call_id
from pampero.parsers.calls import (
    OPEN,
    SKIP,
    TEXT,
    ArgumentsReader,
    CallReader,
    ToolParserBase,
    skip_blank,
)

BOT = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
_NAME = re.compile(r"[\w.\-]*")
_NAME_CHAR = re.compile(r"[\w.\-]")

# OPEN is right after [TOOL_CALLS]; CALL a {"name": ..., "arguments": ...} object.
_LIST = 4  # inside the pre-v11 list, between calls
_FUNCTION = 5  # a v11 name, up to [CALL_ID], [ARGS] or "{"
_CALL_ID = 6  # a v11 call id, up to [ARGS] or "{"
_ARGUMENTS = 7  # a v11 arguments value


class MistralToolParser(ToolParserBase):
    """``[TOOL_CALLS]`` calls, list or ``name[ARGS]{...}`` form; see the module docstring."""

    markers = (BOT, ARGS, CALL_ID)
    start_marker = BOT
    call_start = BOT  # no grammars: [TOOL_CALLS] is a control token no grammar can write

    def __init__(self, *, id_factory: IdFactory = new_call_id) -> None:
        super().__init__(id_factory=id_factory)
        self._args: ArgumentsReader | None = None
        self._name = ""
        self._in_list = False

    def _step_format(self) -> bool:
        state = self._state
        if state == _ARGUMENTS:
            return self._arguments_value()
        if state in (_FUNCTION, _CALL_ID):
            return self._function()
        return self._between()

    def _flush_format(self, rest: str) -> None:
        state = self._state
        if state == _ARGUMENTS and self._args is not None:
            self._arguments(self._args.cut())  # cut off mid-call: truncated, as written
            self._args = None
        elif state == _LIST and not self._region:
            self._content(rest)  # blanks after the list's last complete call
        else:
            self._reject(rest)

    def _after_call(self, reader: CallReader) -> int:
        if reader.broken:
            self._in_list = False
            return SKIP
        return _LIST if self._in_list else TEXT

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
        if state == OPEN and first == "[":
            self._region.append(first)
            self._buf = self._buf[1:]
            self._in_list = True
            self._state = _LIST
        elif first == "{" and (state == OPEN or self._in_list):
            self._start_call()
        elif state == OPEN and _NAME_CHAR.match(first) is not None:
            self._name = ""
            self._state = _FUNCTION
        elif state == _LIST and first in ",]":
            self._region.clear()
            self._buf = self._buf[1:]
            if first == "]":
                self._in_list = False
                self._state = TEXT
        else:
            self._reject()
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
        self._reject()
        return True

    def _begin_arguments(self) -> bool:
        if not self._name:
            self._reject()
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

    def _end_arguments(self, args: ArgumentsReader) -> None:
        self._state = SKIP if args.failed else TEXT
        self._arguments(args.close())
        self._args = None
        self._name = ""

    def _reject(self, rest: str = "") -> None:
        super()._reject(rest)
        self._in_list = False
        self._name = ""
