"""An incremental scanner for one JSON value, as a model writes it.

It is fed text piece by piece, looks at each character once, tells where the value ends (so
what follows, like an outer ``}`` or ``</tool_call>``, is left to the caller), and hands out the
value's text as soon as it is safe to: every prefix it has handed out can be closed into valid
JSON, which :meth:`JsonScanner.finish` does when the model stops early or breaks the syntax.

Held back until what follows shows it belongs: whitespace, commas, object keys and colons
(until the member's value starts), unfinished numbers, literals and escapes.

Lenient where models commonly slip, repaired in the text handed out so it stays valid JSON:
raw control characters inside strings are escaped, an unknown escape such as ``\\d`` keeps its
backslash (``\\\\d``), Python's ``True``/``False``/``None`` become ``true``/``false``/``null``, and
a trailing comma before ``}`` or ``]`` is dropped.

Example::

    scanner = JsonScanner()
    scanner.feed('{"city": "Par')      # -> 13, the whole text was consumed
    scanner.take()                     # '{"city": "Par'
    end = scanner.feed('is"}}</tool_call>')   # -> 4: the value ended before the second "}"
    scanner.take()                     # 'is"}'
"""

from __future__ import annotations

import re

_ORDINARY = re.compile(r'[^"\\\x00-\x1f]+')
_BLANK = re.compile(r"[ \t\n\r]+")
_VALID_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER_PREFIX = re.compile(r"-|-?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?")
_NUMBER_CHARS = frozenset("0123456789+-.eE")
_LITERALS = {
    "true": "true",
    "false": "false",
    "null": "null",
    "True": "true",
    "False": "false",
    "None": "null",
}
_ESCAPES = frozenset('"\\/bfnrt')
_HEX = frozenset("0123456789abcdefABCDEF")
_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
WHITESPACE = " \t\n\r"

# What the scanner expects next.
_VALUE = 0  # a value (after ":" or "," in an array, or at the root)
_OBJECT_FIRST = 1  # a key or "}" right after "{"
_OBJECT_KEY = 2  # a key after ",", or "}" (trailing comma)
_COLON = 3
_AFTER_VALUE = 4  # "," or the closer of the enclosing container
_ARRAY_FIRST = 5  # a value or "]" right after "["
_ARRAY_NEXT = 6  # a value after ",", or "]" (trailing comma)
_STRING = 7
_ESCAPE = 8
_UNICODE = 9
_NUMBER = 10
_LITERAL = 11
_DONE = 12
_FAILED = 13


class JsonScanner:
    """Scans one JSON value incrementally; see the module docstring."""

    __slots__ = (
        "_committed",
        "_in_key",
        "_in_value_string",
        "_out",
        "_pending",
        "_stack",
        "_state",
        "_token",
        "first",
    )

    def __init__(self) -> None:
        self._state = _VALUE
        self._stack: list[str] = []  # the closers of the open containers
        self._out: list[str] = []  # safe text not taken yet
        self._pending: list[str] = []  # scanned text that is not safe to hand out yet
        self._token = ""  # the number, literal or \\u digits being read
        self._in_key = False
        self._in_value_string = False
        self._committed = False
        self.first: str | None = None  # the value's first character: its kind

    @property
    def done(self) -> bool:
        """The value is complete."""
        return self._state == _DONE

    @property
    def failed(self) -> bool:
        """The text stopped being JSON; ``finish`` closes what was handed out."""
        return self._state == _FAILED

    @property
    def ended(self) -> bool:
        return self._state in (_DONE, _FAILED)

    @property
    def started(self) -> bool:
        """Some of the value has been handed out (or is ready to be)."""
        return self._committed

    def take(self) -> str:
        """The text that became safe since the last call."""
        text = "".join(self._out)
        self._out.clear()
        return text

    def finish(self) -> None:
        """End of input: complete the value, closing what is open; ``take`` returns the rest."""
        if self._state == _DONE:
            return
        if (
            self._state == _NUMBER
            and not self._stack
            and _VALID_NUMBER.fullmatch(self._token) is not None
        ):
            self._commit()
            self._state = _DONE
            return
        self._pending.clear()
        if self._committed:
            closing = '"' if self._in_value_string else ""
            self._out.append(closing + "".join(reversed(self._stack)))
            self._state = _DONE
        else:
            self._state = _FAILED

    def cut(self) -> None:
        """End of input mid-value (``max_tokens``): ``take`` returns the rest as it was
        written, with nothing closed, so the handed-out text is the truncated value itself."""
        if self._state in (_DONE, _FAILED):
            return
        if self._committed or self._pending:
            self._out.extend(self._pending)
            if self._state == _ESCAPE:
                self._out.append("\\")
            elif self._state == _UNICODE:
                self._out.append("\\u" + self._token)
            elif self._state == _LITERAL:
                self._out.append(self._token)
            self._committed = True
        self._pending.clear()
        self._state = _DONE

    def feed(self, text: str, pos: int = 0) -> int:
        """Scan ``text[pos:]``. Returns where scanning stopped: just past the value's end when
        it ends, at the offending character when the text stops being JSON, else ``len(text)``.
        """
        end = len(text)
        while pos < end:
            state = self._state
            if state == _STRING:
                pos = self._string(text, pos)
            elif state in (_DONE, _FAILED):
                return pos
            elif state == _ESCAPE:
                pos = self._escape(text, pos)
            elif state == _UNICODE:
                pos = self._unicode(text, pos)
            elif state == _NUMBER:
                pos = self._number(text, pos)
            elif state == _LITERAL:
                pos = self._literal(text, pos)
            else:
                blank = _BLANK.match(text, pos)
                if blank is not None:
                    if self._stack:
                        self._pending.append(blank.group())
                    pos = blank.end()
                    continue
                pos = self._structure(text[pos], pos)
        return pos

    # -- one step per state; each returns the next position ------------------------------------

    def _structure(self, ch: str, pos: int) -> int:
        state = self._state
        top = self._stack[-1] if self._stack else ""
        if state == _VALUE or (state in (_ARRAY_FIRST, _ARRAY_NEXT) and ch != "]"):
            return self._value(ch, pos)
        if state in (_OBJECT_FIRST, _OBJECT_KEY) and ch == '"':
            self._pending.append(ch)
            self._in_key = True
            self._state = _STRING
            return pos + 1
        if state in (_OBJECT_FIRST, _OBJECT_KEY, _ARRAY_FIRST, _ARRAY_NEXT) and ch == top:
            if state in (_OBJECT_KEY, _ARRAY_NEXT):
                self._pending.clear()  # a trailing comma, and the blanks around it
            return self._close(ch, pos)
        if state == _COLON and ch == ":":
            self._pending.append(ch)
            self._state = _VALUE
            return pos + 1
        if state == _AFTER_VALUE:
            if ch == ",":
                self._pending.append(ch)
                self._state = _OBJECT_KEY if top == "}" else _ARRAY_NEXT
                return pos + 1
            if ch == top:
                return self._close(ch, pos)
        self._state = _FAILED
        return pos

    def _value(self, ch: str, pos: int) -> int:
        if self.first is None:
            self.first = ch
        if ch in "{[":
            self._pending.append(ch)
            self._stack.append("}" if ch == "{" else "]")
            self._commit()
            self._state = _OBJECT_FIRST if ch == "{" else _ARRAY_FIRST
            return pos + 1
        if ch == '"':
            self._pending.append(ch)
            self._in_key = False
            self._in_value_string = True
            self._commit()
            self._state = _STRING
            return pos + 1
        if ch == "-" or ch.isdigit():
            self._token = ""
            self._state = _NUMBER
            return pos
        if ch in "tfnTFN":
            self._token = ""
            self._state = _LITERAL
            return pos
        self._state = _FAILED
        return pos

    def _close(self, closer: str, pos: int) -> int:
        self._pending.append(closer)
        self._stack.pop()
        self._commit()
        self._value_done()
        return pos + 1

    def _string(self, text: str, pos: int) -> int:
        run = _ORDINARY.match(text, pos)
        if run is not None:
            self._put_string(run.group())
            return run.end()
        ch = text[pos]
        if ch == '"':
            self._pending.append(ch)
            if self._in_key:
                self._in_key = False
                self._state = _COLON
            else:
                self._in_value_string = False
                self._commit()
                self._value_done()
        elif ch == "\\":
            self._state = _ESCAPE
        else:  # a raw control character: escape it
            self._put_string(_CONTROL.get(ch) or f"\\u{ord(ch):04x}")
        return pos + 1

    def _escape(self, text: str, pos: int) -> int:
        ch = text[pos]
        self._state = _STRING
        if ch in _ESCAPES:
            self._put_string("\\" + ch)
            return pos + 1
        if ch == "u":
            self._token = ""
            self._state = _UNICODE
            return pos + 1
        if ch == "'":
            self._put_string(ch)
            return pos + 1
        self._put_string("\\\\")  # not an escape: the backslash was meant literally
        return pos

    def _unicode(self, text: str, pos: int) -> int:
        ch = text[pos]
        if ch in _HEX:
            self._token += ch
            if len(self._token) == 4:
                self._put_string("\\u" + self._token)
                self._state = _STRING
            return pos + 1
        self._put_string("\\\\u" + self._token)
        self._state = _STRING
        return pos

    def _number(self, text: str, pos: int) -> int:
        ch = text[pos]
        if ch in _NUMBER_CHARS:
            token = self._token + ch
            if _NUMBER_PREFIX.fullmatch(token) is None:
                self._state = _FAILED
                return pos
            self._token = token
            self._pending.append(ch)
            if _VALID_NUMBER.fullmatch(token) is not None:
                self._commit()
            return pos + 1
        if _VALID_NUMBER.fullmatch(self._token) is None:
            self._state = _FAILED
            return pos
        self._value_done()
        return pos

    def _literal(self, text: str, pos: int) -> int:
        token = self._token + text[pos]
        if token in _LITERALS:
            self._pending.append(_LITERALS[token])
            self._commit()
            self._value_done()
            return pos + 1
        if not any(word.startswith(token) for word in _LITERALS):
            self._state = _FAILED
            return pos
        self._token = token
        return pos + 1

    # -- helpers ---------------------------------------------------------------------------------

    def _put_string(self, piece: str) -> None:
        self._pending.append(piece)
        if not self._in_key:
            self._commit()

    def _commit(self) -> None:
        self._out.extend(self._pending)
        self._pending.clear()
        self._committed = True

    def _value_done(self) -> None:
        self._state = _AFTER_VALUE if self._stack else _DONE
