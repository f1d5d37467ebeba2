"""Per-sequence token sampling on a numpy logits row, with vLLM's parameter semantics.

Order of operations (as in vLLM): the structured-output constraint's mask, allowed-token mask,
``min_tokens`` suppression of end tokens,
``logit_bias``, repetition/frequency/presence penalties, named logits processors, then
temperature, ``min_p``, ``top_k`` and ``top_p``. Greedy sequences without any processing are
sampled by the scheduler in one vectorised ``argmax`` over the batch (``Sampler.plain_greedy``).

Log-probabilities are those of the model's raw distribution (vLLM's default "raw logprobs").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pampero.inference import SamplingParams, TokenLogprob
from pampero.sampling.constraint import ConstraintState

FloatRow = npt.NDArray[np.float32]

# top_p first sorts only the tokens whose weight is at least this share of the best token's;
# if they hold less than top_p of the mass it tries the next floor, and 0.0 sorts everything.
# A flat pass (a comparison) costs ~0.05 ms over 150k tokens; an argpartition of the whole
# vocabulary costs ~1 ms, which was 5% of a token's time at single stream.
_TOP_P_FLOORS = (1e-3, 1e-7, 0.0)
# top_k (and top logprobs) first select among the tokens within this many logits of the best;
# the first width that holds at least k tokens holds the k best.
_TOP_K_WIDTHS = (6.0, 12.0, 24.0)
# The per-token path calls ufuncs and array methods, not numpy's module functions: np.max,
# np.flatnonzero, np.cumsum and np.searchsorted each pass through two to ten Python-level
# wrappers (dispatchers, _wrapfunc, ravel), and right after a decode every one of them runs
# with cold caches: about 2 us each, a few per cent of a token's Python time.
_peak_of = np.maximum.reduce


class Sampler:
    """Chooses the next token of one sequence and keeps the state penalties need."""

    def __init__(
        self,
        params: SamplingParams,
        prompt_ids: Sequence[int],
        *,
        vocab_size: int,
        end_ids: frozenset[int],
        choice_index: int = 0,
    ) -> None:
        self.params = params
        self.vocab_size = vocab_size
        entropy = None if params.seed is None else [params.seed & (2**64 - 1), choice_index]
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
        self._bias_ids = np.fromiter(params.logit_bias.keys(), dtype=np.int64)
        self._bias_values = np.fromiter(params.logit_bias.values(), dtype=np.float32)
        self._allowed = (
            np.unique(np.asarray(params.allowed_token_ids, dtype=np.int64))
            if params.allowed_token_ids
            else None
        )
        # Until min_tokens are out, neither end tokens nor stop_token_ids may be chosen; with
        # ignore_eos, end tokens never may (as llama.cpp does, so the text stays coherent).
        self._min_suppress = np.fromiter(sorted(end_ids | set(params.stop_token_ids)), np.int64)
        self._end_ids = np.fromiter(sorted(end_ids), dtype=np.int64)
        self._prompt_unique = (
            np.unique(np.asarray(prompt_ids, dtype=np.int64))
            if params.repetition_penalty != 1.0
            else np.empty(0, dtype=np.int64)
        )
        self._penalised = (
            params.repetition_penalty != 1.0
            or params.frequency_penalty != 0.0
            or params.presence_penalty != 0.0
        )
        self.constraint = ConstraintState(params.constraint) if params.constraint else None
        self._mask = np.zeros(vocab_size, dtype=np.bool_) if self.constraint else None
        self._processes = bool(
            self.constraint is not None
            or self._allowed is not None
            or len(self._bias_ids)
            or self._penalised
            or params.logits_processors
            or params.min_tokens
            or params.ignore_eos
        )
        self.plain_greedy = params.greedy and not self._processes
        # Processing that edits a handful of tokens, done in the row and undone (``choose``).
        self._fixed_touched: list[npt.NDArray[np.int64] | None] = [None, None]
        self._sparse = (
            self._processes
            and self.constraint is None
            and self._allowed is None
            and not params.logits_processors
        )

    def choose(self, logits: FloatRow, output_ids: Sequence[int]) -> int:
        """The next token for this sequence, given its raw logits row (not modified).

        Returns -1 when every token is masked (e.g. a constraint meets ``min_tokens``)."""
        if self._sparse:
            # Edits that touch a few tokens (end tokens, logit_bias, penalties) go into the
            # row itself and are undone after the pick: a copy of the whole row would cost
            # more than the sampling (the row has just been written by llama.cpp's threads,
            # and a copy reads and writes all of it).
            touched = self._touched(output_ids)
            saved = logits[touched]
            try:
                self._edit(logits, output_ids)
                return self._pick(logits)
            finally:
                logits[touched] = saved
        return self._pick(self.process(logits, output_ids))

    def _pick(self, logits: FloatRow) -> int:
        if self.params.greedy:
            if self._processes and not np.isfinite(_peak_of(logits)):
                return -1
            return int(logits.argmax())
        peak = float(_peak_of(logits))
        if not np.isfinite(peak):
            return -1
        return self._sample(logits, peak)

    def process(self, logits: FloatRow, output_ids: Sequence[int]) -> FloatRow:
        """Logits after masks, biases, penalties and processors (a copy; the row is kept)."""
        if not self._processes:
            return logits
        row = logits.copy()
        self._edit(row, output_ids)
        return row

    def _edit(self, row: FloatRow, output_ids: Sequence[int]) -> None:
        """Apply every mask, bias, penalty and processor to ``row``, in place."""
        params = self.params
        mask = self._mask
        if self.constraint is not None and mask is not None and self.constraint.fill_allowed(mask):
            np.copyto(row, -np.inf, where=~mask[: len(row)])
        if self._allowed is not None:
            kept = row[self._allowed]
            row.fill(-np.inf)
            row[self._allowed] = kept
        if len(output_ids) < params.min_tokens:
            row[self._min_suppress] = -np.inf
        if params.ignore_eos:
            row[self._end_ids] = -np.inf
        if len(self._bias_ids):
            row[self._bias_ids] += self._bias_values
        if self._penalised:
            self._penalise(row, output_ids)
        for processor in params.logits_processors:
            processor(output_ids, row)

    def _touched(self, output_ids: Sequence[int]) -> npt.NDArray[np.int64]:
        """Every token ``_edit`` can change when only its sparse edits apply (``_sparse``)."""
        early = len(output_ids) < self.params.min_tokens
        fixed = self._fixed_touched[early]
        if fixed is None:  # made once: it does not depend on the output but for min_tokens
            parts = [self._bias_ids]
            if early:
                parts.append(self._min_suppress)
            if self.params.ignore_eos:
                parts.append(self._end_ids)
            fixed = self._fixed_touched[early] = np.concatenate(parts)
        if self._penalised:
            return np.concatenate([fixed, self._prompt_unique, np.asarray(output_ids, np.int64)])
        return fixed

    def _penalise(self, row: FloatRow, output_ids: Sequence[int]) -> None:
        params = self.params
        out_ids, counts = np.unique(np.asarray(output_ids, dtype=np.int64), return_counts=True)
        if params.repetition_penalty != 1.0:
            seen = np.union1d(self._prompt_unique, out_ids)
            values = row[seen]
            penalty = params.repetition_penalty
            row[seen] = np.where(values > 0, values / penalty, values * penalty)
        if len(out_ids) and (params.frequency_penalty or params.presence_penalty):
            row[out_ids] -= params.frequency_penalty * counts.astype(np.float32) + np.float32(
                params.presence_penalty
            )

    def _sample(self, logits: FloatRow, peak: float) -> int:
        params = self.params
        ids: npt.NDArray[np.int64] | None = None
        if 0 < params.top_k < len(logits):
            ids = top_ids(logits, params.top_k)
            logits = logits[ids]
        else:
            head = _head(logits, peak, params)
            if head is not None:
                return head.sample(logits, self.rng.random())
        probs = _weights(logits, params.temperature)
        if params.min_p > 0.0:
            probs = np.where(probs >= params.min_p * probs.max(), probs, 0.0)
        if params.top_p < 1.0:
            ids, probs = _top_p(probs, ids, params.top_p)
        pick = _draw(probs, self.rng.random())
        return int(ids[pick]) if ids is not None else pick


# Sampling over the whole vocabulary works on the head: the tokens whose weight (the softmax at
# the temperature, the best token weighing 1) is at least _TAIL_FLOOR, a few hundred or
# thousand of 150k at usual temperatures. The tail below it holds at most
# len(tail) * _TAIL_FLOOR of the mass (1.7% for 150k tokens), and is only ever weighed,
# exactly, on the rare draws that could land in it (``_Head.sample``).
_LOG_TAIL_FLOOR = -16.0
_TAIL_FLOOR = float(np.exp(_LOG_TAIL_FLOOR))
# When that first bound leaves a draw (or a top_p cut) undecided, a tighter one counts the tail
# tokens above this second floor at _TAIL_FLOOR and the rest at this one: about 40 times
# tighter, for one more pass over the row. Only if that still leaves it open is the tail
# weighed token by token.
_DEEP_FLOOR = float(np.exp(-24.0))
_HEAD_SHARE = 0.25  # a head larger than this share of the vocabulary saves nothing


def _head(logits: FloatRow, peak: float, params: SamplingParams) -> _Head | None:
    """The head of ``logits`` under ``params``, or None when sampling must weigh every token:
    a flat distribution (a high temperature), or a ``top_p`` nucleus that reaches into the
    tail.

    This runs once per sampled token right after a decode, when the row and everything else
    the sampler touches has left the CPU caches: it makes as few passes and numpy calls as it
    can (one comparison over the row, then work on the head alone)."""
    temperature = params.temperature
    bound = np.float32(peak + temperature * _LOG_TAIL_FLOOR)
    ids = (logits >= bound).nonzero()[0]
    if len(ids) > _HEAD_SHARE * len(logits):
        return None
    weights = logits[ids]
    weights -= np.float32(peak)  # the peak is in the head: it weighs 1
    weights *= np.float32(1.0 / temperature)
    np.exp(weights, out=weights)
    # What the tail can weigh at most (a hair over, for exp's rounding); min_p at or above the
    # floor removes it exactly as it would remove it from the whole vocabulary.
    tail = (len(logits) - len(ids)) * _TAIL_FLOOR * 1.001
    if params.min_p > 0.0:
        weights[weights < params.min_p] = 0.0
        if params.min_p >= _TAIL_FLOOR:
            tail = 0.0
    head = _Head(ids, weights, tail, peak, bound, params)
    if params.top_p < 1.0 and not head.nucleus(params.top_p, logits):
        return None
    return head


class _Head:
    """The head of a logits row (see ``_TAIL_FLOOR``) and an upper bound of its tail's mass."""

    def __init__(
        self,
        ids: npt.NDArray[np.int64],
        weights: FloatRow,
        tail: float,
        peak: float,
        bound: np.float32,
        params: SamplingParams,
    ) -> None:
        self.ids, self.weights, self.tail = ids, weights, tail
        self.head_ids = ids  # the whole head, kept when a nucleus narrows ``ids``
        self.peak, self.bound, self.params = peak, bound, params
        self._tight = tail == 0.0

    def tighten(self, logits: FloatRow) -> bool:
        """Replace the tail's first bound by the tighter one (``_DEEP_FLOOR``); False when it
        already was."""
        if self._tight:
            return False
        self._tight = True
        deep = np.float32(self.peak + self.params.temperature * np.log(_DEEP_FLOOR))
        n_head = len(self.head_ids)
        n_mid = int(np.count_nonzero(logits >= deep)) - n_head
        n_deep = len(logits) - n_head - n_mid
        self.tail = min(self.tail, (n_mid * _TAIL_FLOOR + n_deep * _DEEP_FLOOR) * 1.001)
        return True

    def nucleus(self, top_p: float, logits: FloatRow) -> bool:
        """Narrow the head to the ``top_p`` nucleus of the whole distribution; False when that
        nucleus reaches into the tail (a very flat distribution).

        The nucleus is the smallest set of most likely tokens holding ``top_p`` of the mass,
        and every tail token weighs less than every head token: once the head holds ``top_p``
        of the total, the nucleus is a prefix of the head sorted by weight. The total is
        bounded by the head's mass plus the tail's bound; only when the cut could move within
        those bounds is the bound tightened, and if it still could, the tail weighed. Sorting
        starts, as in ``_top_p``, with the tokens above a floor, enough whenever they hold the
        target."""
        mass = float(self.weights.sum(dtype=np.float64))
        weights = self.weights
        candidates = np.arange(len(weights))
        for floor in _TOP_P_FLOORS:
            if floor <= 0.0:
                break
            above = np.flatnonzero(weights >= np.float32(floor))
            if float(weights[above].sum(dtype=np.float64)) >= top_p * (mass + self.tail):
                candidates = above
                break
        order = candidates[np.argsort(-weights[candidates], kind="stable")]
        cumulative = np.cumsum(weights[order], dtype=np.float64)
        cut = int(np.searchsorted(cumulative, top_p * mass)) + 1

        def settled() -> bool:
            high = top_p * (mass + self.tail)
            return high <= cumulative[-1] and int(np.searchsorted(cumulative, high)) + 1 == cut

        if not settled() and not (self.tighten(logits) and settled()):
            target = top_p * (mass + self._tail_weights(logits).sum(dtype=np.float64))
            if target > cumulative[-1]:
                return False
            cut = int(np.searchsorted(cumulative, target)) + 1
        keep = order[:cut]  # most likely first, as ``_top_p`` orders its nucleus
        self.ids, self.weights, self.tail, self._tight = self.ids[keep], weights[keep], 0.0, True
        return True

    def _tail_weights(self, logits: FloatRow) -> FloatRow:
        """Every token's weight (after ``min_p``), the head's set to 0: the tail, exactly."""
        weights = np.subtract(logits, np.float32(self.peak))
        weights *= np.float32(1.0 / self.params.temperature)
        np.exp(weights, out=weights)
        if self.params.min_p > 0.0:
            weights[weights < self.params.min_p] = 0.0
        weights[self.head_ids] = 0.0
        return weights

    def sample(self, logits: FloatRow, u: float) -> int:
        """A token drawn from the whole row's distribution with ``u`` in [0, 1).

        Head or tail is decided first, at the exact odds ``head / (head + tail)``: a ``u``
        below ``head / (head + bound)`` is below those odds whatever the tail weighs, and is
        then, rescaled, a uniform draw inside the head. Above it the bound is tightened and
        the same holds for the stretch the tighter bound adds (rescaled to that stretch);
        only above that is the tail weighed, and the same ``u`` then decides between the two
        at the exact odds and, rescaled again, draws inside the part it chose. Each token
        keeps probability ``weight / total``."""
        weights = self.weights
        if len(weights) <= _DRAW_BLOCK:
            cumulative = weights.cumsum(dtype=np.float64)
            head = float(cumulative[-1])
        else:
            cumulative, head = None, float(weights.sum(dtype=np.float64))
        sure = head / (head + self.tail)
        if u < sure:
            return int(self.ids[_draw(weights, u / sure, cumulative)])
        if self.tighten(logits):
            tighter = head / (head + self.tail)
            if u < tighter:
                return int(self.ids[_draw(weights, (u - sure) / (tighter - sure), cumulative)])
            sure = tighter
        tail_weights = self._tail_weights(logits)
        exact = head / (head + float(tail_weights.sum(dtype=np.float64)))
        if u < exact:
            return int(self.ids[_draw(weights, (u - sure) / (exact - sure), cumulative)])
        return _draw(tail_weights, (u - exact) / (1.0 - exact))


_DRAW_BLOCK = 2048


def _draw(weights: FloatRow, u: float, cumulative: npt.NDArray[np.float64] | None = None) -> int:
    """The index where ``u`` (in [0, 1)) of the total weight falls: inverse-CDF sampling.

    A float64 running sum over a whole vocabulary (150k entries) costs about a millisecond a
    token, most of a sampled token's Python time; this sums blocks first (one vectorised pass),
    finds the block, then runs the sum inside that block only. Same draw up to the rounding
    order of the sums."""
    n = len(weights)
    if n <= _DRAW_BLOCK:
        if cumulative is None:
            cumulative = weights.cumsum(dtype=np.float64)
        return min(int(cumulative.searchsorted(u * cumulative[-1], side="right")), n - 1)
    starts = np.arange(0, n, _DRAW_BLOCK)
    blocks = np.cumsum(np.add.reduceat(weights, starts, dtype=np.float64))
    target = u * blocks[-1]
    block = min(int(np.searchsorted(blocks, target, side="right")), len(blocks) - 1)
    start = int(starts[block])
    inside = np.cumsum(weights[start : start + _DRAW_BLOCK], dtype=np.float64)
    inside += blocks[block - 1] if block else 0.0
    offset = int(np.searchsorted(inside, target, side="right"))
    if offset == len(inside):  # the two sums rounded apart: the block's last token with weight
        offset = int(np.flatnonzero(weights[start : start + _DRAW_BLOCK])[-1])
    return start + offset


def _weights(logits: FloatRow, temperature: float) -> FloatRow:
    """``exp((logits - max) / temperature)``: the softmax at ``temperature`` before it is
    normalised. min_p, top_p and the draw only compare shares of the total, so the division
    by the sum (a pass over the vocabulary) is never needed; three passes in one buffer."""
    weights = np.subtract(logits, np.max(logits))
    weights *= np.float32(1.0 / temperature)
    return np.exp(weights, out=weights)


def top_ids(row: FloatRow, k: int) -> npt.NDArray[np.int64]:
    """The ids of the ``k`` largest entries of ``row``, in ascending id order.

    Selects among the entries within a few units of the maximum first (one comparison pass);
    a set of at least ``k`` entries at or above a bound holds the ``k`` largest, so this is
    the same set as an argpartition of the whole row, at a tenth of its cost."""
    if k >= len(row):
        return np.arange(len(row), dtype=np.int64)
    peak = row.max()
    for width in _TOP_K_WIDTHS:
        near = np.flatnonzero(row >= peak - np.float32(width))
        if len(near) >= k:
            return np.sort(near[np.argpartition(row[near], -k)[-k:]])
    return np.sort(np.argpartition(row, -k)[-k:])


def _top_p(
    probs: FloatRow, ids: npt.NDArray[np.int64] | None, top_p: float
) -> tuple[npt.NDArray[np.int64], FloatRow]:
    """Keep the smallest most-likely set whose mass reaches ``top_p`` (sorted descending).

    ``probs`` are ``_weights``: the best token weighs 1. The nucleus is a prefix of the tokens
    sorted by weight, so once the tokens above a floor hold ``top_p`` of the mass, sorting
    them alone gives the same set as sorting the whole vocabulary."""
    # min_p may have zeroed part of the mass: top_p is a share of what is left.
    total = float(probs.sum())
    target = top_p * total
    candidates = np.arange(len(probs))
    for floor in _TOP_P_FLOORS:
        if floor <= 0.0:
            break
        above = np.flatnonzero(probs >= np.float32(floor))
        if probs[above].sum() >= target:
            candidates = above
            break
    order = candidates[np.argsort(-probs[candidates], kind="stable")]
    sorted_probs = probs[order]
    cut = int(np.searchsorted(np.cumsum(sorted_probs), target)) + 1
    order = order[:cut]
    chosen_ids = ids[order] if ids is not None else order
    return chosen_ids.astype(np.int64), probs[order]


def logprobs_of(row: FloatRow, chosen: int, top: int) -> TokenLogprob:
    """The chosen token's log-probability and the ``top`` most likely tokens, from raw logits."""
    peak = float(np.max(row))
    log_total = peak + float(np.log(np.sum(np.exp(row - peak), dtype=np.float64)))
    value = row[chosen]
    entry = TokenLogprob(
        token_id=chosen,
        logprob=float(value) - log_total,
        rank=1 + int(np.count_nonzero(row > value)),
    )
    if top > 0:
        best = top_ids(row, top)
        best = best[np.argsort(-row[best], kind="stable")]
        entry.top = [(int(t), float(row[t]) - log_total) for t in best]
    return entry
