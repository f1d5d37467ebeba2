"""A model's vocabulary as constraint backends see it, and the token masks shared by matchers.

``vocabulary_from_tokenizer`` reads any ``pampero.inference.Tokenizer`` once (a few tens of
milliseconds for 150k tokens). The result is plain data, so it pickles to compile workers; each
backend adapts it to its own tokenizer object, once per vocabulary (``model_key``).

Example::

    tokenizer = load_vocab_only(path)            # or an engine's tokenizer
    vocabulary = vocabulary_from_tokenizer(tokenizer)
    masks = TokenMasks.of(vocabulary)
    masks.text[token]                            # token may appear inside constrained text
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pampero.constraints.base import ConstraintVocabulary
from pampero.inference import Tokenizer


def vocabulary_from_tokenizer(
    tokenizer: Tokenizer, *, model_key: str | None = None
) -> ConstraintVocabulary:
    """The constraint view of ``tokenizer``.

    ``special_ids`` are the tokens that can never be part of constrained text: control tokens and
    tokens without bytes (unused slots). ``eos_ids`` are every end-of-generation token.
    ``model_key`` defaults to a digest of the vocabulary itself.
    """
    size = int(tokenizer.vocab_size)
    pieces = tuple(tokenizer.token_bytes(i) for i in range(size))
    special = frozenset(i for i in range(size) if tokenizer.is_special(i) or not pieces[i])
    eos = frozenset(int(t) for t in tokenizer.eog_token_ids if 0 <= t < size)
    if not eos:
        raise ValueError("a constraint vocabulary needs at least one end-of-generation token")
    key = model_key if model_key is not None else _digest(pieces, special, eos)
    return ConstraintVocabulary(
        model_key=key, pieces=pieces, special_ids=special - eos, eos_ids=eos, size=size
    )


def _digest(pieces: tuple[bytes, ...], special: frozenset[int], eos: frozenset[int]) -> str:
    h = hashlib.sha256()
    for piece in pieces:
        h.update(len(piece).to_bytes(2, "little"))
        h.update(piece)
    h.update(repr((sorted(special), sorted(eos))).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class TokenMasks:
    """Per-vocabulary masks every matcher applies on top of its backend's own mask."""

    size: int
    text: npt.NDArray[np.bool_]  # may appear inside constrained text (not special, not EOS)
    eos: npt.NDArray[np.intp]  # every end token, allowed exactly when the output may end
    eos_set: frozenset[int]
    primary_eos: int  # the one end token given to backends that take a single one

    @classmethod
    def of(cls, vocabulary: ConstraintVocabulary) -> TokenMasks:
        size = vocabulary.size
        text = np.zeros(size, dtype=np.bool_)
        text[: len(vocabulary.pieces)] = True
        closed = sorted(vocabulary.special_ids | vocabulary.eos_ids)
        text[np.asarray(closed, dtype=np.intp)] = False
        eos = np.asarray(sorted(vocabulary.eos_ids), dtype=np.intp)
        text.setflags(write=False)
        eos.setflags(write=False)
        return cls(size, text, eos, vocabulary.eos_ids, int(eos[0]))


def text_pieces(vocabulary: ConstraintVocabulary) -> list[bytes]:
    """Every token's bytes, with special and end tokens blanked (backends must never match them
    as text; end tokens are handled by the matcher)."""
    closed = vocabulary.special_ids | vocabulary.eos_ids
    pieces = [b"" if i in closed else p for i, p in enumerate(vocabulary.pieces)]
    pieces.extend(b"" for _ in range(vocabulary.size - len(pieces)))
    return pieces


@dataclass(frozen=True, eq=False)
class CallOpeners:
    """Which tokens may begin a bare tool call (``{``), and which only separate calls."""

    opens: npt.NDArray[np.bool_]  # per token: its text begins with "{"
    gap_ids: frozenset[int]  # tokens whose text is only ``gap`` characters

    @classmethod
    def of(cls, vocabulary: ConstraintVocabulary, gap: str) -> CallOpeners:
        opens = np.zeros(vocabulary.size, dtype=np.bool_)
        gap_bytes = frozenset(gap.encode())
        gaps = []
        for i, piece in enumerate(text_pieces(vocabulary)):
            if piece.startswith(b"{"):
                opens[i] = True
            elif piece and all(byte in gap_bytes for byte in piece):
                gaps.append(i)
        opens.setflags(write=False)
        return cls(opens, frozenset(gaps))
