"""JSON output does not loop inside one string or number.

Greedy decoding with a small model can fall into a cycle inside a literal and stay there until
``max_tokens``: ``"isbn": "1234567890123456789012345..."``, ``1000000000000...``, a key of
``" :  :  :  :"``. The grammar cannot help (an unbounded string allows any length), the output
is cut, and the client gets nothing usable. So the matcher of every JSON constraint is wrapped:
it follows which literal (string or number) the output is in, and when the literal's last
``PERIOD_SPAN`` tokens (at least three turns of the cycle) are one cycle of at most
``MAX_PERIOD`` tokens repeated, it masks every token whose bytes are all bytes of that cycle
until the literal ends. The model then has to write something else: it usually closes the
string. Structure is never touched (an array of forty zeros is an array), nothing changes before
a cycle, and if masking would leave no token, nothing is masked.

Example::

    index = LoopIndex.of(vocabulary)                  # once per vocabulary
    matcher = LiteralLoops(inner_matcher, index)      # per sequence
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # base wraps its matchers with this module's
    from pampero.constraints.base import ConstraintVocabulary, Matcher

MAX_PERIOD = 32  # the longest cycle, in tokens, that counts as a loop
PERIOD_SPAN = 32  # tokens of exact repetition (and at least three turns) before masking

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_NUMBER = frozenset(b"0123456789+-.eE")
_WORDS = 4  # 256 bits: one per byte value


def _byte_bits(data: bytes) -> list[int]:
    """The set of byte values in ``data`` as four 64-bit words."""
    words = [0] * _WORDS
    for byte in set(data):
        words[byte >> 6] |= 1 << (byte & 63)
    return words


@dataclass(frozen=True)
class LoopIndex:
    """Every token's bytes (``pieces``) and the set of byte values in each (``bits``: one row
    of four 64-bit words per token), for finding the tokens made only of a cycle's bytes."""

    pieces: tuple[bytes, ...]
    bits: npt.NDArray[np.uint64]
    nonempty: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, vocabulary: ConstraintVocabulary) -> LoopIndex:
        pieces = tuple(vocabulary.pieces)
        bits = np.array([_byte_bits(p) for p in pieces], dtype=np.uint64).reshape(-1, _WORDS)
        nonempty = np.array([bool(p) for p in pieces], dtype=np.bool_)
        for token in vocabulary.special_ids | vocabulary.eos_ids:
            nonempty[token] = False
        return cls(pieces, bits, nonempty)

    def made_of(self, data: bytes) -> npt.NDArray[np.bool_]:
        """Per token: its bytes are not empty and all among ``data``'s."""
        outside = ~np.array(_byte_bits(data), dtype=np.uint64)
        return self.nonempty & ~(self.bits & outside).any(axis=1)


def cycle(tokens: list[int]) -> int:
    """The shortest period (at most ``MAX_PERIOD``) whose exact repetition fills the last
    ``max(PERIOD_SPAN, 3 * period)`` tokens, or 0 if there is none."""
    size = len(tokens)
    if size < PERIOD_SPAN:
        return 0
    for period in range(1, MAX_PERIOD + 1):
        span = max(PERIOD_SPAN, 3 * period)
        if span > size:
            return 0
        if tokens[size - span + period :] == tokens[size - span : size - period]:
            return period
    return 0


class LiteralLoops:
    """A JSON constraint's matcher that breaks cycles inside one literal (see the module)."""

    def __init__(self, inner: Matcher, index: LoopIndex) -> None:
        self._inner = inner
        self._index = index
        self._in_string = False
        self._in_number = False
        self._escaped = False
        self._literal: list[int] = []  # the tokens written inside the current literal
        self._cycle_bytes = b""  # bytes of the cycles found in it, masked until it ends
        self._banned: npt.NDArray[np.bool_] | None = None

    def fill_allowed(self, mask: npt.NDArray[np.bool_]) -> None:
        self._inner.fill_allowed(mask)
        banned = self._banned
        if banned is None:
            return
        size = min(len(mask), len(banned))
        kept = mask[:size] & ~banned[:size]
        if kept.any() or mask[size:].any():
            mask[:size] = kept

    def accept(self, token_id: int) -> bool:
        if not self._inner.accept(token_id):
            return False
        if token_id < len(self._index.pieces):
            self._feed(token_id, self._index.pieces[token_id])
        return True

    def is_terminated(self) -> bool:
        return self._inner.is_terminated()

    def _feed(self, token_id: int, piece: bytes) -> None:
        inside = self._inside(piece)
        if not inside:
            self._literal.clear()
            self._cycle_bytes = b""
            self._banned = None
            return
        self._literal.append(token_id)
        period = cycle(self._literal)
        if period:
            unit = b"".join(self._index.pieces[t] for t in self._literal[-period:])
            self._cycle_bytes = bytes(set(self._cycle_bytes + unit))
            self._banned = self._index.made_of(self._cycle_bytes)
            self._literal.clear()

    def _inside(self, piece: bytes) -> bool:
        """Follow ``piece``; True if it lies wholly within the literal (a string's content, or
        a number's characters) that was open before it."""
        inside = self._in_string or self._in_number
        for byte in piece:
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif byte == _BACKSLASH:
                    self._escaped = True
                elif byte == _QUOTE:
                    self._in_string, inside = False, False
            elif byte == _QUOTE:
                self._in_string, self._in_number, inside = True, False, False
            elif (byte in _NUMBER) != self._in_number:
                self._in_number, inside = not self._in_number, False
        return inside
