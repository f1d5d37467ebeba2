"""One choice's output as it grows: what every engine does with a token once it is sampled.

``ChoiceOutput.append(token, logits_row)`` records the token's log-probabilities, advances the
structured-output constraint, extends the text (incremental UTF-8, stop strings) and decides
whether the choice is finished, with vLLM's rules:

- an end-of-generation token finishes it (``stop``) unless ``ignore_eos``; it is not in the text;
- a ``stop_token_ids`` token finishes it (``stop``, ``stop_reason`` = the id);
- a stop string, once ``min_tokens`` are out, cuts the text and finishes it (``stop_reason`` =
  the string);
- a completed constraint finishes it (``stop``);
- ``max_tokens``, or the prompt plus the output filling the context, finishes it (``length``);
- ``append(-1, ...)`` (the sampler found no allowed token) finishes it (``stop``);
- a constraint that fails (over its CPU budget, its library gave up) finishes it with
  ``error`` set, which its last delta carries: the request fails, the batch goes on.

``delta()`` hands out what was produced since the last call. These are the batching scheduler's
``_append`` / ``_check_stops`` rules, minus its KV bookkeeping, so that engines outside the
scheduler (``pampero.engines.transformers``) stop exactly as it does.

Example::

    choice = ChoiceOutput.start(params, prompt_ids, vocab, vocab_size=len(row), n_ctx=4096)
    while not choice.done:
        row = next_logits()
        choice.append(choice.sampler.choose(row, choice.output_ids), row)
        if (delta := choice.delta()) is not None:
            send(delta)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pampero.errors import PamperoError
from pampero.inference import SamplingParams, SequenceDelta, TokenLogprob
from pampero.sampling.constraint import Progress
from pampero.sampling.sampler import Sampler, logprobs_of
from pampero.sampling.text import TextAssembler


@dataclass(frozen=True)
class ChoiceVocabulary:
    """What choices need to know about a vocabulary: token bytes, control and end tokens."""

    pieces: Sequence[bytes]
    special_ids: frozenset[int]
    eog_ids: frozenset[int]


def new_text(params: SamplingParams, vocab: ChoiceVocabulary) -> TextAssembler:
    """An empty text for one choice of a request with ``params``."""
    return TextAssembler(
        vocab.pieces,
        vocab.special_ids,
        stop=params.stop,
        include_stop=params.include_stop_str_in_output,
        skip_special=params.skip_special_tokens,
        spaces_between_special=params.spaces_between_special_tokens,
        keep=params.keep_special_ids,
    )


@dataclass
class ChoiceOutput:
    index: int
    params: SamplingParams
    sampler: Sampler
    text: TextAssembler
    eog_ids: frozenset[int]
    n_prompt: int
    n_ctx: int
    output_ids: list[int] = field(default_factory=list)
    pending_ids: list[int] = field(default_factory=list)
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    error: PamperoError | None = None
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def start(
        cls,
        params: SamplingParams,
        prompt_ids: Sequence[int],
        vocab: ChoiceVocabulary,
        *,
        vocab_size: int,
        n_ctx: int,
        index: int = 0,
    ) -> ChoiceOutput:
        """A fresh choice ``index`` of a request; ``vocab_size`` is the logits row length."""
        return cls(
            index=index,
            params=params,
            sampler=Sampler(
                params,
                prompt_ids,
                vocab_size=vocab_size,
                end_ids=vocab.eog_ids,
                choice_index=index,
            ),
            text=new_text(params, vocab),
            eog_ids=vocab.eog_ids,
            n_prompt=len(prompt_ids),
            n_ctx=n_ctx,
        )

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def append(self, token: int, row: npt.NDArray[np.float32]) -> None:
        """Add one sampled token (``row``: the raw logits it was sampled from)."""
        params = self.params
        constraint = self.sampler.constraint
        if constraint is not None and constraint.failure is not None:
            self.fail(constraint.failure)
            return
        if token < 0:  # nothing was allowed: the constraint and the parameters contradict
            self.finish("stop")
            return
        progress = constraint.advance(token) if constraint is not None else Progress.CONTINUE
        if progress is Progress.FAILED and constraint is not None and constraint.failure:
            self.fail(constraint.failure)
            return
        if params.logprobs is not None:
            self.pending_logprobs.append(logprobs_of(row, token, params.logprobs))
        self.output_ids.append(token)
        self.pending_ids.append(token)
        self._check_stops(token)
        if self.done:
            return
        if progress is Progress.COMPLETE:
            self.finish("stop")
            return
        limit = params.max_tokens
        if (limit is not None and len(self.output_ids) >= limit) or (
            self.n_prompt + len(self.output_ids) >= self.n_ctx
        ):
            self.finish("length")

    def _check_stops(self, token: int) -> None:
        params = self.params
        if token in self.eog_ids and not params.ignore_eos:
            self.finish("stop")
        elif token in params.stop_token_ids:
            if params.include_stop_str_in_output:
                self.text.add(token)
            self.finish("stop", token)
        else:
            before = len(self.text.text)
            self.text.add(token)
            if len(self.output_ids) < params.min_tokens:
                return
            found = self.text.find_stop(before)
            if found is not None:
                self.finish("stop", found)

    def finish(self, reason: str, stop_reason: str | int | None = None) -> None:
        self.finish_reason = reason
        self.stop_reason = stop_reason

    def fail(self, error: PamperoError) -> None:
        """End the choice with ``error`` (its output so far is not a valid answer)."""
        self.error = error
        self.finish("stop")

    def delta(self) -> SequenceDelta | None:
        """What this choice produced since the last delta, or None if nothing (always None
        after the delta that carried the finish reason)."""
        if self._closed:
            return None
        final = self._closed = self.done
        text = self.text.take(final)
        if not (text or self.pending_ids or final):
            return None
        out = SequenceDelta(
            index=self.index,
            text=text,
            token_ids=self.pending_ids,
            logprobs=self.pending_logprobs if self.params.logprobs is not None else None,
            finish_reason=self.finish_reason if final else None,
            stop_reason=self.stop_reason if final else None,
            error=self.error if final else None,
        )
        self.pending_ids = []
        self.pending_logprobs = []
        return out
