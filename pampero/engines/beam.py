"""Beam search (``use_beam_search``) inside the continuous-batching scheduler.

A request of width ``W`` (its ``n``) holds ``W`` sequence slots. After each step every live
beam proposes its ``2W`` most likely next tokens (scored on the log-softmax of its processed
logits, scaled by ``temperature`` when one is given, restricted by top_k/top_p/min_p); the
``W`` best candidates by length-penalised score become the next beams. A candidate ending in an
end token or completing a stop string is a finished hypothesis. A child whose parent has
several children gets a copy of the parent's KV in a slot freed by a beam without children
(a metadata update in a unified KV buffer).

Scores follow Hugging Face: ``cumulative_logprob / generated_length ** length_penalty``, the
end token not counted. The search stops at ``max_tokens``, or once ``W`` hypotheses are finished
and no live beam scores better than the worst of them. Results arrive at the end, as vLLM's
beam search does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pampero.engines.sequence import Phase, Sequence
from pampero.inference import SamplingParams, TokenLogprob
from pampero.sampling.sampler import logprobs_of, top_ids
from pampero.sampling.text import TextAssembler

Row = npt.NDArray[np.float32]


@dataclass
class Hypothesis:
    tokens: list[int]
    cumulative: float
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    parent: int = -1  # index of the sequence (slot holder) whose KV this beam extends

    def score(self, length_penalty: float) -> float:
        length = len(self.tokens) - (1 if self.finish_reason == "stop_eos" else 0)
        return float(self.cumulative / max(length, 1) ** length_penalty)


def _candidates(params: SamplingParams, row: Row, k: int) -> tuple[npt.NDArray[np.int64], Row]:
    """The ``k`` best next tokens with their log-probabilities under the request's shaping."""
    scaled = row / np.float32(params.temperature) if params.temperature > 0 else row
    peak = np.max(scaled)
    logp = scaled - (peak + np.log(np.sum(np.exp(scaled - peak))))
    if 0 < params.top_k < len(logp):
        floor = logp[top_ids(logp, params.top_k)].min()
        logp = np.where(logp >= floor, logp, -np.inf)
    if params.min_p > 0:
        logp = np.where(logp >= np.log(params.min_p) + np.max(logp), logp, -np.inf)
    # The k best by a threshold pass first (``top_ids``), not a partition of the whole
    # vocabulary: a tenth of the cost per beam and step, the same set.
    best = top_ids(logp, k)
    best = best[np.argsort(-logp[best], kind="stable")]
    if params.top_p < 1.0:
        mass = np.cumsum(np.exp(logp[best]))
        best = best[: int(np.searchsorted(mass, params.top_p)) + 1]
    best = best[np.isfinite(logp[best])]
    return best.astype(np.int64), logp[best]


class BeamSearch:
    """The beam state of one request; ``step`` is called once per engine step."""

    def __init__(
        self,
        sequences: list[Sequence],
        params: SamplingParams,
        *,
        end_ids: frozenset[int],
        n_ctx: int,
        new_text: Callable[[], TextAssembler],
        copy_kv: Callable[[int, int], None],
    ) -> None:
        self.sequences = sequences
        self.params = params
        self.width = params.n
        self.end_ids = end_ids
        self.n_ctx = n_ctx
        self.new_text = new_text
        self.copy_kv = copy_kv
        self.live: list[Hypothesis] = []
        self.finished: list[Hypothesis] = []
        self.n_prompt = sequences[0].n_prompt
        self.prompt = sequences[0].tokens[: self.n_prompt]

    def step(self, rows: dict[int, Row]) -> None:
        """Expand every beam that got a logits row (keyed by sequence index)."""
        parents = self.live or [Hypothesis(tokens=[], cumulative=0.0, parent=0)]
        candidates: list[Hypothesis] = []
        for parent in parents:
            row = rows.get(parent.parent)
            if row is not None:
                candidates.extend(self._expand(parent, row))
        penalty = self.params.length_penalty
        candidates.sort(key=lambda h: h.score(penalty), reverse=True)
        self.live = []
        for hypothesis in candidates:
            if hypothesis.finish_reason is not None:
                self.finished.append(hypothesis)
            elif len(self.live) < self.width:
                self.live.append(hypothesis)
        if self._done():
            self._finish()
        else:
            self._place()

    def _expand(self, parent: Hypothesis, row: Row) -> list[Hypothesis]:
        sequence = self.sequences[parent.parent]
        processed = sequence.sampler.process(row, parent.tokens)
        ids, logps = _candidates(self.params, processed, 2 * self.width)
        want = self.params.logprobs
        out = []
        for token, logp in zip(ids.tolist(), logps.tolist(), strict=True):
            child = Hypothesis(
                tokens=[*parent.tokens, token],
                cumulative=parent.cumulative + logp,
                logprobs=[*parent.logprobs, logprobs_of(row, token, want)]
                if want is not None
                else [],
                parent=parent.parent,
            )
            self._check_end(child)
            out.append(child)
        return out

    def _check_end(self, child: Hypothesis) -> None:
        params = self.params
        token = child.tokens[-1]
        generated = len(child.tokens)
        if token in self.end_ids and not params.ignore_eos:
            child.finish_reason = "stop_eos"
        elif token in params.stop_token_ids:
            child.finish_reason, child.stop_reason = "stop", token
        elif params.stop and generated >= params.min_tokens:
            text = self._text(child.tokens)
            stop = text.find_stop(0)
            if stop is not None:
                child.finish_reason, child.stop_reason = "stop", stop
        if child.finish_reason is None and (
            (params.max_tokens is not None and generated >= params.max_tokens)
            or self.n_prompt + generated >= self.n_ctx
        ):
            child.finish_reason = "length"

    def _text(self, tokens: list[int]) -> TextAssembler:
        text = self.new_text()
        for token in tokens:
            text.add(token)
        return text

    def _done(self) -> bool:
        if not self.live:
            return True
        if len(self.finished) < self.width:
            return False
        penalty = self.params.length_penalty
        worst_kept = sorted((h.score(penalty) for h in self.finished), reverse=True)[self.width - 1]
        return self.live[0].score(penalty) <= worst_kept

    def _place(self) -> None:
        """Give each live beam a slot; copy KV where a parent has more than one child."""
        kept: dict[int, int] = {}  # parent slot index -> live beam keeping it
        copies: list[tuple[int, Hypothesis]] = []
        for hypothesis in self.live:
            if hypothesis.parent not in kept:
                kept[hypothesis.parent] = id(hypothesis)
            else:
                copies.append((hypothesis.parent, hypothesis))
        spare = [i for i in range(len(self.sequences)) if i not in kept]
        for (parent, hypothesis), slot_index in zip(copies, spare, strict=False):
            self.copy_kv(self.sequences[parent].slot, self.sequences[slot_index].slot)
            hypothesis.parent = slot_index
        active = {h.parent for h in self.live}
        for hypothesis in self.live:
            sequence = self.sequences[hypothesis.parent]
            sequence.tokens[:] = [*self.prompt, *hypothesis.tokens]
            sequence.choice.output_ids[:] = hypothesis.tokens
            sequence.n_past = len(sequence.tokens) - 1
            sequence.phase = Phase.DECODE
        for index, sequence in enumerate(self.sequences):
            if index not in active:
                sequence.phase = Phase.WAITING_SIBLING

    def _finish(self) -> None:
        penalty = self.params.length_penalty
        pool = sorted([*self.finished, *self.live], key=lambda h: h.score(penalty), reverse=True)
        for index, sequence in enumerate(self.sequences):
            sequence.phase = Phase.DONE
            choice = sequence.choice
            if index >= len(pool):
                choice.finish("stop")
                continue
            best = pool[index]
            tokens = best.tokens
            if best.finish_reason == "stop_eos" and not self.params.include_stop_str_in_output:
                tokens = tokens[:-1]
            choice.text = self._text(tokens)
            if isinstance(best.stop_reason, str):
                choice.text.find_stop(0)
            choice.pending_ids = list(best.tokens)
            choice.pending_logprobs = best.logprobs
            choice.output_ids[:] = best.tokens
            reason = best.finish_reason or "length"
            choice.finish("stop" if reason == "stop_eos" else reason, best.stop_reason)
