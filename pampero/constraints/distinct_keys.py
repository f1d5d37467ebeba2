"""JSON output never names a key twice in one object.

RFC 8259 says the names in an object SHOULD be unique, and every parser keeps only one of two
equal names, so a repeated key is never what a client wants. A grammar cannot say it (an object
that allows any key allows it again), and a small model that has written a key likes to write
it again, and again, until ``max_tokens`` (``"description": ...`` forty times). So the matcher
of every JSON constraint is wrapped: it follows the JSON text written so far (which objects are
open, the keys each holds, whether a key is being written and how far) and masks the tokens
that would finish a key the innermost object already has. It only removes tokens; if that would
leave none, it removes none.

Keys are compared as written (escapes included), which is how a model repeats them.

Example::

    index = KeyIndex.of(vocabulary)                  # once per vocabulary
    matcher = DistinctKeys(inner_matcher, index)     # per sequence
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # base wraps its matchers with this module's
    from pampero.constraints.base import ConstraintVocabulary, Matcher

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN = re.compile(rb'[ \t\r\n]*"([^"\\]*)"', re.DOTALL)
_AFTER_COMMA = re.compile(rb'[ \t\r\n]*,[ \t\r\n]*"([^"\\]*)"', re.DOTALL)
_Ids = npt.NDArray[np.int64]


@dataclass(frozen=True)
class KeyIndex:
    """Which tokens finish which key, by where they start: inside the key (``closing``: the
    bytes before the closing quote), where a key may begin (``opening``), or after a value
    (``after_comma``)."""

    closing: dict[bytes, _Ids]
    opening: dict[bytes, _Ids]
    after_comma: dict[bytes, _Ids]
    pieces: tuple[bytes, ...]

    @classmethod
    def of(cls, vocabulary: ConstraintVocabulary) -> KeyIndex:
        closing: dict[bytes, list[int]] = defaultdict(list)
        opening: dict[bytes, list[int]] = defaultdict(list)
        after_comma: dict[bytes, list[int]] = defaultdict(list)
        for token, piece in enumerate(vocabulary.pieces):
            if token in vocabulary.special_ids or b'"' not in piece:
                continue
            before = piece[: piece.index(b'"')]
            if b"\\" not in before:
                closing[before].append(token)
            if match := _OPEN.match(piece):
                opening[match.group(1)].append(token)
            if match := _AFTER_COMMA.match(piece):
                after_comma[match.group(1)].append(token)

        def arrays(found: dict[bytes, list[int]]) -> dict[bytes, _Ids]:
            return {key: np.array(ids, dtype=np.int64) for key, ids in found.items()}

        return cls(arrays(closing), arrays(opening), arrays(after_comma), tuple(vocabulary.pieces))


@dataclass
class _Object:
    keys: set[bytes] = field(default_factory=set)
    expect_key: bool = True  # after ``{`` or ``,``, before the key's opening quote


class DistinctKeys:
    """A JSON constraint's matcher whose objects never repeat a key."""

    def __init__(self, inner: Matcher, index: KeyIndex) -> None:
        self._inner = inner
        self._index = index
        self._stack: list[_Object | None] = []  # None: an array
        self._in_string = False
        self._escaped = False
        self._key: bytearray | None = None  # the key being written, while it is

    def fill_allowed(self, mask: npt.NDArray[np.bool_]) -> None:
        self._inner.fill_allowed(mask)
        banned = self._banned()
        if banned:
            ids = np.concatenate(banned)
            ids = ids[ids < len(mask)]
            kept = mask[ids].copy()
            mask[ids] = False
            if not mask.any():
                mask[ids] = kept

    def accept(self, token_id: int) -> bool:
        if not self._inner.accept(token_id):
            return False
        if token_id < len(self._index.pieces):
            self._feed(self._index.pieces[token_id])
        return True

    def is_terminated(self) -> bool:
        return self._inner.is_terminated()

    def _banned(self) -> list[_Ids]:
        top = self._stack[-1] if self._stack else None
        if top is None or not top.keys or self._escaped:
            return []
        if self._key is not None:
            written = bytes(self._key)
            table, names = (
                self._index.closing,
                [key[len(written) :] for key in top.keys if key.startswith(written)],
            )
        elif self._in_string:
            return []
        elif top.expect_key:
            table, names = self._index.opening, list(top.keys)
        else:
            table, names = self._index.after_comma, list(top.keys)
        return [table[name] for name in names if name in table]

    def _feed(self, data: bytes) -> None:
        for byte in data:
            if self._in_string:
                self._string_byte(byte)
            else:
                self._structure_byte(byte)

    def _string_byte(self, byte: int) -> None:
        if self._escaped:
            self._escaped = False
        elif byte == _BACKSLASH:
            self._escaped = True
        elif byte == _QUOTE:
            self._in_string = False
            top = self._stack[-1] if self._stack else None
            if self._key is not None and top is not None:
                top.keys.add(bytes(self._key))
                top.expect_key = False
            self._key = None
            return
        if self._key is not None:
            self._key.append(byte)

    def _structure_byte(self, byte: int) -> None:
        top = self._stack[-1] if self._stack else None
        if byte == _QUOTE:
            self._in_string = True
            if top is not None and top.expect_key:
                self._key = bytearray()
        elif byte == ord("{"):
            self._stack.append(_Object())
        elif byte == ord("["):
            self._stack.append(None)
        elif byte in (ord("}"), ord("]")):
            if self._stack:
                self._stack.pop()
        elif byte == ord(",") and top is not None:
            top.expect_key = True
