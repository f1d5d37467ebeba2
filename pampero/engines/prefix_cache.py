"""KV of finished prompts kept beyond the sequence slots, matched by longest common prefix.

The scheduler's slots already keep what their last request decoded, and a new prompt borrows
the longest prefix from any of them. But there are only ``max_seqs`` slots: with more
conversations than slots, each new prompt evicts a slot's history. ``PrefixCache`` keeps that
history under extra llama.cpp sequence ids that never decode: when a slot is about to drop
tokens (a prompt that diverges from what it holds), the slot's KV is first tagged with a cache
sequence id (``seq_copy``: in a unified KV buffer that only adds the id to the cells; nothing is
copied), so the cells outlive the slot's reuse.

Entries are evicted least recently used first, bounded by ``budget`` tokens (each entry counts
its full length, an upper bound on the cells it pins since entries may share cells) and by the
number of cache sequence ids. The runner allocates ``budget`` extra cells, so running sequences
can still always grow to a full context.

Example::

    cache = PrefixCache(runner, seq_ids=range(8, 40), budget=4096)
    cache.keep(slot_seq_id, tokens_in_slot)          # before the slot is trimmed
    seq_id, length = cache.match(prompt, limit=len(prompt) - 1)
    if length:
        runner.seq_copy(seq_id, target_seq_id, length)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np

# Shorter histories are not worth a sequence id: a chat template's header alone is ~20 tokens.
MIN_ENTRY_TOKENS = 16


class KvOps(Protocol):
    def seq_remove(self, seq_id: int, start: int = 0, end: int = -1) -> None: ...

    def seq_copy(self, src: int, dst: int, end: int = -1) -> None: ...


def common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """How many leading tokens ``a`` and ``b`` share, at most ``limit``; negative tokens (image
    cells) never match."""
    n = min(len(a), len(b), limit)
    if n <= 0:
        return 0
    x = np.asarray(a[:n], dtype=np.int64)
    y = np.asarray(b[:n], dtype=np.int64)
    differ = np.flatnonzero((x != y) | (x < 0))
    return int(differ[0]) if len(differ) else n


class PrefixCache:
    def __init__(
        self, runner: KvOps, seq_ids: Sequence[int], budget: int, min_tokens: int = MIN_ENTRY_TOKENS
    ) -> None:
        self._runner = runner
        self._free = list(reversed(seq_ids))
        self._entries: OrderedDict[int, list[int]] = OrderedDict()  # oldest first
        self.budget = budget
        self.min_tokens = min_tokens
        self.used = 0  # tokens held, summed over entries

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, prompt: Sequence[int], limit: int) -> tuple[int, int]:
        """The entry sharing the longest prefix with ``prompt`` (at most ``limit`` tokens):
        ``(seq_id, length)``, or ``(-1, 0)``. A hit becomes the most recently used entry."""
        best, best_len = -1, 0
        for seq_id, tokens in self._entries.items():
            length = common_prefix(tokens, prompt, limit)
            if length > best_len:
                best, best_len = seq_id, length
        if best >= 0:
            self._entries.move_to_end(best)
        return best, best_len

    def keep(self, src: int, tokens: Sequence[int], protect: int = -1) -> None:
        """Keep ``tokens``, which sequence ``src`` holds in KV from position 0, unless too short
        or already held. Entries that ``tokens`` extends are replaced by it; the entry
        ``protect`` (about to be read) is never evicted for it."""
        held = list(tokens)
        image = next((i for i, t in enumerate(held) if t < 0), None)
        if image is not None:  # past an image, positions and cells part ways: stop there
            held = held[:image]
        n = len(held)
        if n < self.min_tokens or n > self.budget:
            return
        for seq_id, tokens_held in list(self._entries.items()):
            if common_prefix(tokens_held, held, n) == n:  # already held (or more)
                self._entries.move_to_end(seq_id)
                return
            if seq_id != protect and common_prefix(tokens_held, held, n) == len(tokens_held):
                self._drop(seq_id)  # a shorter past of the same history
        victims = [seq_id for seq_id in self._entries if seq_id != protect]  # oldest first
        while victims and (self.used + n > self.budget or not self._free):
            self._drop(victims.pop(0))
        if self.used + n > self.budget or not self._free:
            return
        seq_id = self._free.pop()
        self._runner.seq_remove(seq_id)
        self._runner.seq_copy(src, seq_id, n)
        self._entries[seq_id] = held
        self.used += n

    def _drop(self, seq_id: int) -> None:
        tokens = self._entries.pop(seq_id)
        self.used -= len(tokens)
        self._runner.seq_remove(seq_id)
        self._free.append(seq_id)


__all__ = ["MIN_ENTRY_TOKENS", "PrefixCache", "common_prefix"]
