"""Incremental detokenization and stop strings for one generated sequence.

Pieces arrive as raw bytes (a multi-byte character may span tokens), so text goes through an
incremental UTF-8 decoder. Stop strings are searched only in the region a new token could
complete, and streamed text holds back any tail that could still grow into a stop string, so a
client never sees half of a stop string that is later cut.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextAssembler:
    """Builds the text of one sequence token by token and finds its stop strings."""

    def __init__(
        self,
        pieces: Sequence[bytes],
        special_ids: frozenset[int],
        *,
        stop: Sequence[str] = (),
        include_stop: bool = False,
        skip_special: bool = True,
        spaces_between_special: bool = True,
        keep: frozenset[int] = frozenset(),
    ) -> None:
        self._pieces = pieces
        # Control tokens a parser reads (e.g. [TOOL_CALLS]) stay in the text even when skipping.
        self._special = special_ids - keep if skip_special else special_ids
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stop = [s for s in stop if s]
        self._max_stop = max((len(s) for s in self._stop), default=0)
        self._include_stop = include_stop
        self._skip_special = skip_special
        self._spaces = spaces_between_special and not skip_special
        self._last_special = False
        self.text = ""
        self._sent = 0

    def add(self, token_id: int) -> None:
        """Append one token's text."""
        special = token_id in self._special
        if special and self._skip_special:
            return
        piece = self._decoder.decode(self._pieces[token_id])
        if not piece:
            # Part of a multi-byte character: it, and its spacing, come with a later token.
            return
        if self._spaces and self.text and (special or self._last_special):
            # As Hugging Face does with spaces_between_special_tokens: special tokens are
            # separated from their neighbours by one space.
            piece = " " + piece
        self._last_special = special
        self.text += piece

    def find_stop(self, searched_from: int) -> str | None:
        """If a stop string ends at or after ``searched_from``, cut the text there and return it."""
        if not self._stop:
            return None
        start = max(0, searched_from - self._max_stop + 1)
        best: tuple[int, str] | None = None
        for stop in self._stop:
            at = self.text.find(stop, start)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, stop)
        if best is None:
            return None
        at, stop = best
        self.text = self.text[: at + len(stop)] if self._include_stop else self.text[:at]
        # Bytes of an unfinished character follow the stop string: they must not be flushed
        # into the text by the final ``take``.
        self._decoder.reset()
        return stop

    def take(self, final: bool) -> str:
        """The text not yet handed out; unless ``final``, minus a tail that may start a stop."""
        if final:
            self.text += self._decoder.decode(b"", final=True)
            end = len(self.text)
        else:
            end = len(self.text) - self._held_back()
        if end <= self._sent:
            return ""
        delta = self.text[self._sent : end]
        self._sent = end
        return delta

    def _held_back(self) -> int:
        if not self._stop:
            return 0
        text = self.text
        for size in range(min(self._max_stop - 1, len(text)), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self._stop):
                return size
        return 0
