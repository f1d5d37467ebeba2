"""A non-strict schema's check after generation, and the bounded resampling it may take.

When the constraint compiled for a request had to relax its schema
(``pampero.constraints.schema_relax``), every finished choice is checked against the full
schema (``PostCheck``). A choice that fails is sampled again, each attempt with the tokens its
earlier attempts left of ``max_tokens``, up to ``MAX_ATTEMPTS`` in all; a greedy request is
resampled at ``RETRY_TEMPERATURE`` (greedy decoding would only repeat itself) and a seeded one
with the seed plus the attempt number. Usage counts the tokens of every attempt. A choice that
still fails is a 422 (``OutputNotConforming``): invalid output is never returned as valid. A
choice cut by ``max_tokens`` keeps ``finish_reason: "length"``, which already says it is
incomplete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from pampero.constraints.postcheck import PostCheck
from pampero.errors import OutputNotConforming
from pampero.inference import GenerationRequest, SamplingParams
from pampero.serving.generation import Choice, Generation

MAX_ATTEMPTS = 3
RETRY_TEMPERATURE = 0.7
HEADER = "x-pampero-schema-checked-after"
ATTEMPTS_HEADER = "x-pampero-schema-attempts"


async def run_checked(
    generation: Generation,
    check: PostCheck,
    content: Callable[[Choice], str | None],
    param: str,
) -> dict[str, str]:
    """Run ``generation``, resampling choices whose ``content`` fails ``check``; the headers
    that say what was checked and how many attempts it took."""
    await generation.run()
    request = generation.request
    spent = {choice.index: len(choice.token_ids) for choice in generation.choices}
    attempts = 1
    while True:
        failing = await _failing(generation.choices, check, content)
        if not failing:
            break
        index, problem = failing[0]
        left = _left(request.sampling, spent[index])
        if attempts >= MAX_ATTEMPTS or left < 1:
            raise OutputNotConforming(
                f"the model's output does not satisfy the schema ({problem}) after {attempts} "
                f"attempt(s); checked after generation: {', '.join(check.dropped)}. Send "
                "strict: true to enforce the schema exactly (only keywords a backend enforces "
                "are allowed then), or allow more max_tokens",
                param=param,
            )
        retry = Generation(
            generation.served,
            _retry_request(request, attempts, left),
            generation.metrics,
            generation.arrival,
        )
        await retry.run()
        attempts += 1
        choice = retry.choices[0]
        choice.index = index
        generation.choices[index] = choice
        spent[index] += len(choice.token_ids)
        generation.usage.completion_tokens += retry.usage.completion_tokens
    return {HEADER: ", ".join(check.dropped), ATTEMPTS_HEADER: str(attempts)}


async def _failing(
    choices: list[Choice], check: PostCheck, content: Callable[[Choice], str | None]
) -> list[tuple[int, str]]:
    out = []
    for choice in choices:
        text = content(choice)
        if choice.finish_reason != "stop" or text is None:
            continue
        problem = await asyncio.to_thread(check.problem, text)
        if problem is not None:
            out.append((choice.index, problem))
    return out


def _left(sampling: SamplingParams, spent: int) -> int:
    if sampling.max_tokens is None:
        return 1 << 30  # bounded by the context, as the first attempt was
    return sampling.max_tokens - spent


def _retry_request(request: GenerationRequest, attempt: int, left: int) -> GenerationRequest:
    sampling = request.sampling
    retry = replace(
        sampling,
        n=1,
        max_tokens=None if sampling.max_tokens is None else left,
        seed=None if sampling.seed is None else sampling.seed + attempt,
        prompt_logprobs=None,
    )
    if sampling.greedy:
        retry.temperature = RETRY_TEMPERATURE
        retry.top_k = 0
    return replace(request, request_id=f"{request.request_id}-retry{attempt}", sampling=retry)
