"""One choice of one request through ``model.generate``, with pampero's sampling and stops.

``generate`` runs the model (cache, attention masks, and each architecture's own position
handling, such as Qwen2-VL's multimodal RoPE), while every decision is pampero's: a logits
processor hands the step's raw logits to ``ChoiceOutput`` (``Sampler`` for the token, then
log-probabilities, constraint, text and stop rules), streams the choice's delta, and forces that
token by masking every other one; a stopping criterion ends generation once the choice is
finished or the request was cancelled, so a cancellation takes effect within one step.
``generate`` itself never stops on an end token (the model's generation config is neutral; see
``pampero.engines.transformers.loader``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pampero.engines.choice import ChoiceOutput
from pampero.engines.transformers.inputs import ModelInputs
from pampero.engines.transformers.loader import LoadedModel
from pampero.inference import SequenceDelta, TokenLogprob
from pampero.sampling.sampler import logprobs_of

Emit = Callable[[SequenceDelta], None]


def run_choice(
    loaded: LoadedModel,
    inputs: ModelInputs,
    choice: ChoiceOutput,
    *,
    cancelled: Callable[[], bool],
    emit: Emit,
) -> None:
    """Generate ``choice`` to its end (or until ``cancelled()``), emitting a delta per step."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    room = choice.n_ctx - inputs.n_tokens
    limit = choice.params.max_tokens
    config = GenerationConfig(  # type: ignore[no-untyped-call]
        do_sample=False,
        max_new_tokens=max(1, min(room, limit) if limit is not None else room),
        pad_token_id=loaded.pad_token_id,
        use_cache=True,
    )
    with torch.inference_mode():
        loaded.model.generate(
            **inputs.tensors,
            generation_config=config,
            logits_processor=LogitsProcessorList([_Chooser(choice, emit)]),
            stopping_criteria=StoppingCriteriaList([_Finished(choice, cancelled)]),
        )
    if not choice.done and not cancelled():  # generate hit max_new_tokens first
        choice.finish("length")
    if not cancelled() and (delta := choice.delta()) is not None:
        emit(delta)


def prompt_logprobs(
    loaded: LoadedModel, inputs: ModelInputs, top: int
) -> list[TokenLogprob | None]:
    """vLLM's ``prompt_logprobs``: for each prompt token after the first, its log-probability
    given the tokens before it and the ``top`` most likely alternatives (one extra forward)."""
    import torch

    with torch.inference_mode():
        logits = loaded.model(**inputs.tensors, use_cache=False).logits[0]
    ids = inputs.token_ids
    out: list[TokenLogprob | None] = [None]
    for position in range(len(ids) - 1):
        row = logits[position].float().cpu().numpy()
        out.append(logprobs_of(row, ids[position + 1], top))
    return out


class _Chooser:
    """A transformers ``LogitsProcessor``: pampero samples, generate follows."""

    def __init__(self, choice: ChoiceOutput, emit: Emit) -> None:
        self.choice = choice
        self.emit = emit

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        choice = self.choice
        row = scores[0].float().cpu().numpy().astype(np.float32, copy=False)
        token = (
            int(np.argmax(row))
            if choice.sampler.plain_greedy
            else choice.sampler.choose(row, choice.output_ids)
        )
        if not choice.done:
            choice.append(token, row)
            if not choice.done and (delta := choice.delta()) is not None:
                self.emit(delta)
        forced = torch.full_like(scores, float("-inf"))
        forced[:, max(token, 0)] = 0.0
        return forced


class _Finished:
    """A transformers ``StoppingCriteria``: stop once the choice is done or the request gone."""

    def __init__(self, choice: ChoiceOutput, cancelled: Callable[[], bool]) -> None:
        self.choice = choice
        self.cancelled = cancelled

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self.choice.done or self.cancelled()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)
