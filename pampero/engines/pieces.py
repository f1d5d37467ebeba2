"""The decoding half of a ``pampero.inference.Tokenizer``, over a table of every token's bytes.

Both engines read every token's raw bytes once at load, so detokenizing on the hot path is a list
lookup; what the table gives (decoding, a token's bytes, control tokens) is the same for both.

Example::

    class MyTokenizer(PieceTableTokenizer):
        def __init__(self, vocab) -> None:
            super().__init__(read_every_piece(vocab), frozenset(vocab.control_ids))
"""

from __future__ import annotations

from collections.abc import Sequence


class PieceTableTokenizer:
    """``decode``, ``token_bytes``, ``is_special`` and ``special_texts`` from ``pieces`` (one
    entry per id; ``vocab_size`` is its length) and the control tokens ``special_ids``."""

    def __init__(self, pieces: list[bytes], special_ids: frozenset[int]) -> None:
        self.vocab_size = len(pieces)
        self.pieces = pieces
        self.special_ids = special_ids
        self._special_texts = frozenset(
            pieces[i].decode("utf-8", "replace") for i in special_ids if pieces[i]
        )

    def decode(self, token_ids: Sequence[int], *, skip_special: bool = True) -> str:
        pieces = self.pieces
        special = self.special_ids
        parts = [
            pieces[t]
            for t in token_ids
            if 0 <= t < self.vocab_size and not (skip_special and t in special)
        ]
        return b"".join(parts).decode("utf-8", "replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self.pieces[token_id]

    def is_special(self, token_id: int) -> bool:
        return token_id in self.special_ids

    def special_texts(self) -> frozenset[str]:
        return self._special_texts
