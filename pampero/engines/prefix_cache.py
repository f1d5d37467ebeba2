"""KV of finished prompts kept beyond the sequence slots, matched by longest common prefix.

The scheduler's slots already keep what their last request decoded, and a new prompt borrows
the longest prefix from any of them. But there are only ``max_seqs`` slots: with more
conversations than slots, each new prompt evicts a slot's history. ``PrefixCache`` keeps that
history when a slot is about to drop tokens (a prompt that diverges from what it holds), so a
later prompt can restore it into whatever slot it lands in. Where the history is kept is the
store's business:

- ``KvStore`` (one KV buffer for all sequences): the slot's cells are tagged with an extra
  llama.cpp sequence id that never decodes (``seq_copy``: only the id is added to the cells;
  nothing is copied). The runner allocates ``budget`` extra cells, so running sequences can
  still always grow to a full context.
- ``HostStore`` (one KV buffer per sequence, the default): the slot's KV is serialised into host
  memory (``seq_save``, as llama-server's ``--cache-ram`` does) and written back into the slot
  that needs it (``seq_load``). No KV cells are spent on the cache (a split buffer would have
  to give each history a stream of a full context); each kept token costs its K and V rows in
  RAM.

Entries are evicted least recently used first, bounded by ``budget`` tokens (each entry counts
its full length, an upper bound on what it pins since device entries may share cells) and by
the store's capacity.

Example::

    cache = PrefixCache(KvStore(runner, seq_ids=range(8, 40)), budget=4096)
    cache.keep(slot_seq_id, tokens_in_slot)          # before the slot is trimmed
    entry, length = cache.match(prompt, limit=len(prompt) - 1)
    if length:
        cache.restore(entry, target_seq_id, length)   # target emptied first
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

# Shorter histories are not worth an entry: a chat template's header alone is ~20 tokens.
MIN_ENTRY_TOKENS = 16
_HOST_ENTRIES = 4096  # a bound on the linear match scan; the token budget binds long before


class KvOps(Protocol):
    def seq_remove(self, seq_id: int, start: int = 0, end: int = -1) -> None: ...

    def seq_copy(self, src: int, dst: int, end: int = -1) -> None: ...


class HostOps(Protocol):
    def seq_remove(self, seq_id: int, start: int = 0, end: int = -1) -> None: ...

    def seq_save(self, seq_id: int) -> Any: ...

    def seq_load(self, data: Any, dst: int) -> None: ...


class EntryStore(Protocol):
    """Where the cache's entries live; ``keep`` returns the new entry's key, or -1 if full."""

    def keep(self, src: int, n: int) -> int: ...

    def restore(self, key: int, dst: int, length: int) -> None: ...

    def drop(self, key: int) -> None: ...

    def full(self) -> bool: ...


class KvStore:
    """Entries as extra sequence ids in a unified KV buffer (``seq_ids``: one per entry)."""

    def __init__(self, runner: KvOps, seq_ids: Sequence[int]) -> None:
        self._runner = runner
        self._free = list(reversed(seq_ids))

    def full(self) -> bool:
        return not self._free

    def keep(self, src: int, n: int) -> int:
        if not self._free:
            return -1
        seq_id = self._free.pop()
        self._runner.seq_remove(seq_id)
        self._runner.seq_copy(src, seq_id, n)
        return seq_id

    def restore(self, key: int, dst: int, length: int) -> None:
        self._runner.seq_copy(key, dst, length)

    def drop(self, key: int) -> None:
        self._runner.seq_remove(key)
        self._free.append(key)


class HostStore:
    """Entries as serialised sequence state in host memory."""

    def __init__(self, runner: HostOps, capacity: int = _HOST_ENTRIES) -> None:
        self._runner = runner
        self._capacity = capacity
        self._data: dict[int, Any] = {}
        self._keys = itertools.count()

    def full(self) -> bool:
        return len(self._data) >= self._capacity

    def keep(self, src: int, n: int) -> int:
        if self.full():
            return -1
        key = next(self._keys)
        self._data[key] = self._runner.seq_save(src)  # what the scheduler keeps is tokens[:n]
        return key

    def restore(self, key: int, dst: int, length: int) -> None:
        self._runner.seq_load(self._data[key], dst)
        self._runner.seq_remove(dst, length, -1)

    def drop(self, key: int) -> None:
        del self._data[key]


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
    def __init__(self, store: EntryStore, budget: int, min_tokens: int = MIN_ENTRY_TOKENS) -> None:
        self._store = store
        self._entries: OrderedDict[int, list[int]] = OrderedDict()  # oldest first
        self.budget = budget
        self.min_tokens = min_tokens
        self.used = 0  # tokens held, summed over entries

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, prompt: Sequence[int], limit: int) -> tuple[int, int]:
        """The entry sharing the longest prefix with ``prompt`` (at most ``limit`` tokens):
        ``(key, length)``, or ``(-1, 0)``. A hit becomes the most recently used entry."""
        best, best_len = -1, 0
        for key, tokens in self._entries.items():
            length = common_prefix(tokens, prompt, limit)
            if length > best_len:
                best, best_len = key, length
        if best >= 0:
            self._entries.move_to_end(best)
        return best, best_len

    def restore(self, key: int, dst: int, length: int) -> None:
        """Make sequence ``dst`` (emptied first) hold the entry's first ``length`` tokens."""
        self._store.restore(key, dst, length)

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
        for key, tokens_held in list(self._entries.items()):
            if common_prefix(tokens_held, held, n) == n:  # already held (or more)
                self._entries.move_to_end(key)
                return
            if key != protect and common_prefix(tokens_held, held, n) == len(tokens_held):
                self._drop(key)  # a shorter past of the same history
        victims = [key for key in self._entries if key != protect]  # oldest first
        while victims and (self.used + n > self.budget or self._store.full()):
            self._drop(victims.pop(0))
        if self.used + n > self.budget:
            return
        key = self._store.keep(src, n)
        if key < 0:
            return
        self._entries[key] = held
        self.used += n

    def _drop(self, key: int) -> None:
        tokens = self._entries.pop(key)
        self.used -= len(tokens)
        self._store.drop(key)


__all__ = ["MIN_ENTRY_TOKENS", "HostStore", "KvStore", "PrefixCache", "common_prefix"]
