"""Speculative decoding's drafts: tokens guessed cheaply, verified by the model in one decode.

A sequence that speculates decodes its last sampled token plus ``K`` drafted tokens in the same
batch as everything else, all with logits. Row ``j`` gives the distribution of the token after
draft ``j``; the scheduler samples each row in order with the sequence's own sampler (masks,
penalties, processors, constraint: the very pipeline it uses without speculation) and keeps
going while the sampled token equals the next draft. The first mismatch is itself a sampled
token, so every step yields between 1 and ``K + 1`` tokens, and the KV of rejected drafts is
removed (``BatchRunner.seq_remove``).

Why this keeps the output distribution: the drafts here are deterministic (a point mass ``q``
on the draft token ``d``). The standard speculative acceptance rule accepts ``d`` with
probability ``min(1, p(d) / q(d)) = p(d)`` and, on rejection, samples from the residual
``max(0, p - q)`` normalised, which is ``p`` without ``d``. Sampling ``x ~ p`` and accepting
exactly when ``x == d`` is the same rule: ``d`` is kept with probability ``p(d)``, and a
rejected position's token is ``p`` conditioned on ``x != d``. So each position's token has
exactly the distribution the non-speculative sampler gives it, and with greedy sampling only an
exact match is ever accepted.

``ngram_draft`` is prompt lookup (vLLM's ``ngram`` method, llama.cpp's ``lookup``): find the
sequence's last ``n`` tokens earlier in its prompt or output, and propose what followed them.
It costs no model and shines when the answer repeats its input (code edits, quoting a
document, JSON that echoes fields).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Matching on the last 4, 3, then 2 tokens: a single token ("(", " the") recurs everywhere and
# would propose drafts that are mostly rejected, and every draft row costs a decode row.
NGRAM_MAX = 4
NGRAM_MIN = 2


@dataclass(frozen=True)
class DraftStats:
    """Draft tokens proposed and accepted so far (one request, or the whole engine)."""

    drafted: int = 0
    accepted: int = 0


def ngram_draft(
    tokens: Sequence[int], k: int, n_max: int = NGRAM_MAX, n_min: int = NGRAM_MIN
) -> list[int]:
    """Up to ``k`` tokens that followed the latest earlier occurrence of ``tokens``' longest
    matching suffix (``n_max`` down to ``n_min`` tokens); ``[]`` when nothing matches.

    >>> ngram_draft([5, 6, 7, 8, 1, 5, 6, 7], 3)
    [8, 1, 5]
    """
    length = len(tokens)
    if k <= 0 or length < n_min + 1:
        return []
    arr = np.asarray(tokens, dtype=np.int64)
    for n in range(min(n_max, length - 1), n_min - 1, -1):
        suffix = arr[length - n :]
        # Every earlier window of n tokens that is followed by at least one token.
        windows = sliding_window_view(arr[: length - 1], n)
        hits = np.flatnonzero((windows == suffix).all(axis=1))
        if not len(hits):
            continue
        # The latest occurrence whose continuation is full length, else the longest one.
        starts = hits + n
        full = starts[starts + k <= length]
        start = int(full[-1]) if len(full) else int(starts[0])
        draft = arr[start : start + k]
        negative = np.flatnonzero(draft < 0)  # an image's cells are no tokens to propose
        if len(negative):
            draft = draft[: negative[0]]
        return [int(t) for t in draft]
    return []


__all__ = ["NGRAM_MAX", "NGRAM_MIN", "DraftStats", "ngram_draft"]
