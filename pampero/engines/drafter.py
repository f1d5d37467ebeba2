"""Drafts from a smaller model with the same vocabulary (llama.cpp's ``--model-draft``).

A ``ModelDrafter`` owns a second batch runner (the draft model, one KV sequence per slot of
the target) and proposes, for every speculating sequence of a step at once, the ``k`` tokens
the draft model would choose greedily after the sequence's tokens. The target verifies them in
its usual batched decode (``pampero.engines.speculative``): greedy drafts are point masses, so
the acceptance rule there keeps the target's distribution exactly, whatever the draft says.

The drafter keeps, per slot, the tokens whose KV the draft model holds. Before proposing it
drops the KV past the longest common prefix of those and the sequence's tokens (rejected
drafts, or another request in the slot), decodes the rest (a new prompt, the tokens the target
accepted or sampled) in chunks of its batch, then one token per sequence per round: ``k``
draft tokens cost one catch-up decode and ``k - 1`` single-token rounds of the draft model,
all sequences together.

Example::

    drafter = ModelDrafter(draft_runner)
    [[318, 264], [11]] == drafter.propose([(0, tokens_a, 2), (1, tokens_b, 1)])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pampero.engines.scheduler import BatchRunner


class ModelDrafter:
    """Greedy drafts from a draft model. Not thread-safe: the engine thread is its only user."""

    def __init__(self, runner: BatchRunner) -> None:
        self.runner = runner
        self._held: dict[int, list[int]] = {}  # slot -> tokens whose KV the draft holds

    def propose(self, wanted: Sequence[tuple[int, Sequence[int], int]]) -> list[list[int]]:
        """For each ``(slot, tokens, k)``: up to ``k`` greedy draft tokens after ``tokens``
        (fewer only where the draft model's context ends)."""
        drafts: list[list[int]] = [[] for _ in wanted]
        live: list[int] = []  # indices into wanted still drafting
        pending: dict[int, list[int]] = {}
        for i, (slot, tokens, k) in enumerate(wanted):
            room = self.runner.n_ctx_seq - len(tokens)
            if k <= 0 or room <= 0 or not tokens:
                continue
            pending[i] = self._sync(slot, tokens)
            live.append(i)
        last = self._catch_up(wanted, live, pending)
        for i, token in last.items():
            drafts[i].append(token)
        while True:
            live = [
                i
                for i in live
                if len(drafts[i]) < wanted[i][2]
                and len(self._held[wanted[i][0]]) < self.runner.n_ctx_seq
            ]
            if not live:
                return drafts
            width = self.runner.n_batch
            for start in range(0, len(live), width):
                chunk = live[start : start + width]
                logits = self._decode_one_each([(wanted[i][0], drafts[i][-1]) for i in chunk])
                for i, row in zip(chunk, logits, strict=True):
                    drafts[i].append(int(np.argmax(row)))

    def _sync(self, slot: int, tokens: Sequence[int]) -> list[int]:
        """Drop the slot's KV past what it shares with ``tokens``; the tokens left to decode."""
        held = self._held.setdefault(slot, [])
        common = _common_prefix(held, tokens)
        if common == len(tokens):  # the draft already holds every token: redo the last one
            common -= 1
        if common < len(held):
            self.runner.seq_remove(slot, common, -1)
            del held[common:]
        return list(tokens[common:])

    def _catch_up(
        self,
        wanted: Sequence[tuple[int, Sequence[int], int]],
        live: list[int],
        pending: dict[int, list[int]],
    ) -> dict[int, int]:
        """Decode every live sequence's pending tokens, in batches of at most ``n_batch``
        rows; the greedy token after each sequence's last one."""
        first: dict[int, int] = {}
        queue = {i: list(pending[i]) for i in live}
        while queue:
            budget = self.runner.n_batch
            tok: list[int] = []
            pos: list[int] = []
            sid: list[int] = []
            want: list[int] = []
            ends: list[int] = []  # sequences whose last pending token is in this batch
            for i in list(queue):
                if budget <= 0:
                    break
                slot = wanted[i][0]
                take = queue[i][:budget]
                held = self._held[slot]
                tok += take
                pos += range(len(held), len(held) + len(take))
                sid += [slot] * len(take)
                held += take
                budget -= len(take)
                del queue[i][: len(take)]
                done = not queue[i]
                want += [0] * (len(take) - 1) + [1 if done else 0]
                if done:
                    ends.append(i)
                    del queue[i]
            logits = self.runner.decode(
                np.asarray(tok, np.int32),
                np.asarray(pos, np.int32),
                np.asarray(sid, np.int32),
                np.asarray(want, np.int8),
            )
            for i, row in zip(ends, logits, strict=True):
                first[i] = int(np.argmax(row))
        return first

    def _decode_one_each(self, rows: list[tuple[int, int]]) -> npt.NDArray[np.float32]:
        positions = []
        for slot, token in rows:
            held = self._held[slot]
            positions.append(len(held))
            held.append(token)
        return self.runner.decode(
            np.asarray([t for _, t in rows], np.int32),
            np.asarray(positions, np.int32),
            np.asarray([s for s, _ in rows], np.int32),
            np.ones(len(rows), np.int8),
        )


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    left = np.asarray(a[:n], dtype=np.int64)
    right = np.asarray(b[:n], dtype=np.int64)
    differ = np.flatnonzero(left != right)
    return int(differ[0]) if len(differ) else n


__all__ = ["ModelDrafter"]
