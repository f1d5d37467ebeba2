"""Reading one tool call's JSON incrementally, and the bookkeeping every tool parser shares.

:class:`ArgumentsReader` reads an arguments value and streams it as JSON object text;
:class:`CallReader` reads a whole ``{"name": ..., "arguments": ...}`` object;
:class:`ToolParserBase` turns both into :class:`~pampero.parsers.base.ParsedDelta` pieces,
holding content whitespace back as described in :mod:`pampero.parsers.base`, and runs the
states every format has: content up to a start marker, a call object, the rest of a broken call.
"""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from typing import Any, ClassVar

from pampero.parsers.base import IdFactory, SteppedParser, ToolCallDelta, new_call_id
from pampero.parsers.jsonscan import WHITESPACE, JsonScanner

ARGUMENT_KEYS = ("arguments", "parameters")
_BLANK = re.compile(r"[ \t\n\r]*")


def skip_blank(text: str, pos: int) -> int:
    """The first position at or after ``pos`` that is not JSON whitespace."""
    match = _BLANK.match(text, pos)
    return match.end() if match is not None else pos


def partial_suffix(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that is a proper start of ``marker``."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class ArgumentsReader:
    """Reads the value of a call's arguments; hands it out as the text of a JSON object.

    - an object streams as the model writes it (see :mod:`pampero.parsers.jsonscan`);
    - a string (``"arguments": "{\\"a\\": 1}"``) is decoded and its JSON read when it is complete;
    - anything else (``null``, a list, a number) gives ``{}``.
    """

    __slots__ = ("_handed_out", "_scanner")

    def __init__(self) -> None:
        self._scanner = JsonScanner()
        self._handed_out = False

    @property
    def ended(self) -> bool:
        return self._scanner.ended

    @property
    def failed(self) -> bool:
        return self._scanner.failed

    def feed(self, text: str, pos: int = 0) -> int:
        return self._scanner.feed(text, pos)

    def take(self) -> str:
        """Argument text that can be streamed now."""
        if self._scanner.first != "{":
            return ""
        return self._hand_out(self._scanner.take())

    def close(self) -> str:
        """The rest of the arguments, completing them (``"{}"`` if nothing was handed out)."""
        self._scanner.finish()
        kind = self._scanner.first
        if kind == "{":
            rest = self._scanner.take()
        elif kind == '"' and self._scanner.done:
            rest = _object_text(decode_string(self._scanner.take()))
        else:
            rest = ""
        if not self._handed_out and not rest:
            rest = "{}"
        return self._hand_out(rest)

    def cut(self) -> str:
        """The rest of arguments cut off by the end of generation, as written: an object's
        text stays unclosed (``{"city": "Par``); arguments written as a JSON string give the
        text the string holds so far (``"{\\"city\\": \\"Par`` gives ``{"city": "Par``)."""
        kind = self._scanner.first
        if kind == '"':
            self._scanner.finish()  # closes the string, so it can be decoded
            decoded = decode_string(self._scanner.take()) if self._scanner.done else None
            return self._hand_out(decoded.lstrip(WHITESPACE) if decoded else "")
        self._scanner.cut()
        return self._hand_out(self._scanner.take()) if kind == "{" else ""

    def _hand_out(self, text: str) -> str:
        if text:
            self._handed_out = True
        return text


def decode_string(text: str) -> str | None:
    """The string a JSON text spells, or ``None`` if it is not a string. A lone surrogate
    (``"\\ud83d"`` cut from its pair) becomes ``?``: it could not be encoded as UTF-8 later."""
    value = json.loads(text)
    if not isinstance(value, str):
        return None
    return value.encode("utf-8", "replace").decode("utf-8")


def _object_text(decoded: str | None) -> str:
    """The JSON object text inside a string the model wrote as its arguments."""
    if decoded is None:
        return ""
    inner = decoded.strip(WHITESPACE)
    if not inner.startswith("{"):
        return ""
    scanner = JsonScanner()
    scanner.feed(inner)
    scanner.finish()
    return scanner.take()


# CallReader states
_START = 0
_KEY_OR_END = 1  # after "{" or ","
_KEY = 2
_COLON = 3
_VALUE = 4
_AFTER_VALUE = 5
_END = 6


class CallReader:
    """Reads one ``{"name": "f", "arguments": {...}}`` object (``parameters`` works too).

    The call is *confirmed* once its name is complete; in ``strict`` mode (for formats where a
    bare JSON object may be ordinary content) only when the object starts with ``"name"``
    (optionally after ``"type": "function"``) followed by the arguments key, as llama.cpp's
    Llama 3.x parser requires. Before confirmation, anything unexpected rejects the object;
    after it, a syntax error ends the call with its arguments closed.

    ``feed`` returns the position just past the object's ``}``, at the character where it stopped
    making sense, or the end of the text when it wants more.
    """

    __slots__ = (
        "_args",
        "_key",
        "_keys",
        "_scanner",
        "_state",
        "closed",
        "confirmed",
        "name",
        "started",
        "strict",
    )

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.name: str | None = None
        self.confirmed = False
        self.closed = False  # its "}" was read: the object ended cleanly
        self.started = False  # set by the parser once it has emitted the call's first delta
        self._state = _START
        self._scanner: JsonScanner | None = None  # the key or the value being read
        self._args: ArgumentsReader | None = None
        self._key = ""
        self._keys: list[str] = []

    @property
    def ended(self) -> bool:
        """The object is complete, or it stopped making sense."""
        return self._state == _END

    @property
    def rejected(self) -> bool:
        """It ended without being a call: the caller treats its text as content."""
        return self._state == _END and not self.confirmed

    @property
    def broken(self) -> bool:
        """A call whose JSON stopped making sense: what follows is the rest of its markup."""
        return self._state == _END and self.confirmed and not self.closed

    def feed(self, text: str, pos: int = 0) -> int:
        end = len(text)
        while pos < end and self._state != _END:
            if self._state in (_KEY, _VALUE):
                pos = self._feed_inner(text, pos)
                continue
            pos = skip_blank(text, pos)
            if pos < end:
                pos = self._structure(text[pos], pos)
        return pos

    def take_arguments(self) -> str:
        """Argument text to stream now (only once the call is confirmed)."""
        if not self.confirmed or self._args is None:
            return ""
        return self._args.take()

    def close_arguments(self) -> str:
        """The rest of the arguments at the end of the call (or of the generation)."""
        self._state = _END
        if self._args is None:
            self._args = ArgumentsReader()
        return self._args.close()

    def cut_arguments(self) -> str:
        """End of generation inside the object: a confirmed call still stands, with the
        arguments it had, as written (see ``ArgumentsReader.cut``)."""
        self._state = _END
        return self._args.cut() if self._args is not None else ""

    def finish(self) -> None:
        """End of generation inside the object: a confirmed call still stands."""
        self._state = _END

    def _structure(self, ch: str, pos: int) -> int:
        state = self._state
        if state == _START and ch == "{":
            self._state = _KEY_OR_END
            return pos + 1
        if state == _KEY_OR_END and ch == '"':
            self._scanner = JsonScanner()
            self._state = _KEY
            return pos
        if state in (_KEY_OR_END, _AFTER_VALUE) and ch == "}":
            self._state = _END
            self.closed = True
            return pos + 1
        if state == _COLON and ch == ":":
            self._state = _VALUE
            self._scanner = self._value_reader()
            return pos + 1
        if state == _AFTER_VALUE and ch == ",":
            self._state = _KEY_OR_END
            return pos + 1
        self._state = _END
        return pos

    def _value_reader(self) -> JsonScanner | None:
        key = self._key
        if key in ARGUMENT_KEYS and self._args is None:
            self._args = ArgumentsReader()
            return None
        return JsonScanner()

    def _feed_inner(self, text: str, pos: int) -> int:
        reader: JsonScanner | ArgumentsReader | None = self._scanner
        if reader is None:
            reader = self._args
        assert reader is not None
        pos = reader.feed(text, pos)
        if reader.failed:
            self._state = _END
            return pos
        if not reader.ended:
            return pos
        if self._state == _KEY:
            assert self._scanner is not None
            self._key = json.loads(self._scanner.take())
            self._state = _COLON if self._accept_key(self._key) else _END
        else:
            self._value_read()
        return pos

    def _accept_key(self, key: str) -> bool:
        self._keys.append(key)
        if not self.strict or self.confirmed:
            return True
        before = self._keys[:-1]
        if key == "type":
            return "name" not in before
        if key == "name":
            return all(k == "type" for k in before)
        if key in ARGUMENT_KEYS and "name" in before:
            self.confirmed = self.name is not None
            return self.confirmed
        return False

    def _value_read(self) -> None:
        self._state = _AFTER_VALUE
        scanner = self._scanner
        self._scanner = None
        if scanner is None or self._key != "name" or self.name is not None:
            return
        value = decode_string(scanner.take()) if scanner.first == '"' else None
        if value is None or not value.strip():
            self._state = _END  # not a name: not a call
            return
        self.name = value.strip()
        if not self.strict:
            self.confirmed = True


# The states every tool parser has; a parser numbers its own from 4.
TEXT = 0  # content, watching for the start marker
OPEN = 1  # right after the start marker
CALL = 2  # a call object, read by ``_reader``
SKIP = 3  # the rest of a broken call, up to the next start marker


class ToolParserBase(SteppedParser):
    """What tool parsers share: call indices and ids, the content whitespace rule of
    :mod:`pampero.parsers.base`, and the states TEXT, CALL and SKIP (OPEN only at the end).

    A parser names its ``start_marker``, steps and flushes its own states in ``_step_format``
    and ``_flush_format``, and says in ``_after_call`` where a call object leads.
    """

    start_marker: ClassVar[str]
    #: See ``ToolParserFactory``: a format without grammars (the defaults) cannot be forced.
    call_start: ClassVar[str | None] = None
    bare_call_gap: ClassVar[str | None] = None

    @classmethod
    def call_rules(
        cls,
        functions: list[dict[str, Any]],
        *,
        strict_only: bool,
        parallel: bool,
        bare: bool = False,
    ) -> str | None:
        return None

    @classmethod
    def call_grammar(cls, functions: list[dict[str, Any]], *, opened: bool) -> str | None:
        return None

    def __init__(self, *, id_factory: IdFactory = new_call_id) -> None:
        super().__init__()
        self._new_id = id_factory
        self._calls = 0
        self._blank = ""  # held-back content whitespace
        self._state = TEXT
        self._region: list[str] = []  # raw text of a call not confirmed yet, for a fallback
        self._reader: CallReader | None = None

    @property
    def tool_calls_found(self) -> bool:
        return self._calls > 0

    @abstractmethod
    def _step_format(self) -> bool:
        """``_step`` in one of the format's own states (OPEN included)."""

    @abstractmethod
    def _flush_format(self, rest: str) -> None:
        """``_flush`` in one of the format's own states."""

    @abstractmethod
    def _after_call(self, reader: CallReader) -> int:
        """The state that follows a call object (``reader.broken``: its JSON broke)."""

    def _step(self) -> bool:
        state = self._state
        if state == TEXT:
            return self._text()
        if state == CALL:
            return self._call()
        if state == SKIP:
            return self._skip()
        return self._step_format()

    def _flush(self, rest: str) -> None:
        state = self._state
        if state == CALL and self._reader is not None:
            reader = self._reader
            if reader.confirmed and not reader.ended:  # cut off mid-call: truncated, as written
                self._stream_call(reader)
                self._arguments(reader.cut_arguments())
                self._reader = None
                self._state = SKIP
            elif reader.confirmed:
                self._stream_call(reader)
                self._end_call(reader)
            else:
                reader.finish()
                self._reject(rest)
        elif state == TEXT:
            self._content(rest)
        elif state == OPEN:
            self._reject(rest)
        elif state != SKIP:
            self._flush_format(rest)
        self._finish_content()

    def _text(self) -> bool:
        """Content, up to the start marker."""
        buf, marker = self._buf, self.start_marker
        start = buf.find(marker)
        if start < 0:
            cut = len(buf) - partial_suffix(buf, marker)
            self._content(buf[:cut])
            self._buf = buf[cut:]
            return False
        self._content(buf[:start])
        self._region = [self._take_blank(), marker]
        self._buf = buf[start + len(marker) :]
        self._state = OPEN
        return True

    def _open(self, *, strict: bool) -> bool:
        """After the start marker: blanks, then a call object, or anything else: not a call."""
        buf = self._buf
        pos = skip_blank(buf, 0)
        if pos == len(buf):
            return False
        self._region.append(buf[:pos])
        self._buf = buf[pos:]
        if buf[pos] == "{":
            self._start_call(strict=strict)
        else:
            self._reject()
        return True

    def _start_call(self, *, strict: bool = False) -> None:
        self._reader = CallReader(strict=strict)
        self._state = CALL

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
        buf, marker = self._buf, self.start_marker
        start = buf.find(marker)
        if start < 0:
            self._buf = buf[len(buf) - partial_suffix(buf, marker) :]
            return False
        self._buf = buf[start:]
        self._state = TEXT
        return True

    def _end_call(self, reader: CallReader) -> None:
        self._state = self._after_call(reader)
        self._arguments(reader.close_arguments())
        self._reader = None
        self._region.clear()

    def _reject(self, rest: str = "") -> None:
        """Not a call after all: its text so far (and ``rest``) is content."""
        self._content("".join(self._region) + rest)
        self._region.clear()
        self._reader = None
        self._state = TEXT

    def _content(self, text: str) -> None:
        if not text:
            return
        kept = text.rstrip(WHITESPACE)
        if kept:
            self._delta.content += self._blank + kept
            self._blank = text[len(kept) :]
        else:
            self._blank += text

    def _take_blank(self) -> str:
        """The held-back whitespace, handed to markup that may turn out to be a call."""
        blank, self._blank = self._blank, ""
        return blank

    def _begin_call(self, name: str) -> None:
        self._delta.add_call_delta(ToolCallDelta(self._calls, self._new_id(), name))
        self._calls += 1

    def _arguments(self, fragment: str) -> None:
        if fragment:
            self._delta.add_call_delta(ToolCallDelta(self._calls - 1, arguments=fragment))

    def _stream_call(self, reader: CallReader) -> None:
        """Emit what ``reader`` has for its call: the start once confirmed, then arguments."""
        if not reader.confirmed or reader.name is None:
            return
        if not reader.started:
            self._begin_call(reader.name)
            reader.started = True
        self._arguments(reader.take_arguments())

    def _finish_content(self) -> None:
        blank = self._take_blank()
        if not self.tool_calls_found:
            self._delta.content += blank
