"""``POST /v1/completions``: legacy text completion, with the same sampling as chat.

A batch of prompts runs as one engine request per prompt, concurrently; choice ``i`` of
prompt ``p`` is reported as index ``p * n + i``, as OpenAI numbers them. The batch is one
request to the client, so it is admitted as a unit (all queued or none) and ends as one: a
prompt that fails, or the client leaving, aborts every sibling. ``best_of`` samples
more choices and returns the ``n`` with the highest cumulative log-probability; ``suffix`` uses
the model's fill-in-the-middle tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pampero.errors import UnsupportedParameter
from pampero.inference import GenerationRequest, SamplingParams, Tokenizer
from pampero.protocol import CompletionRequest, Parsed
from pampero.protocol.replies import Reply, TextCompletion
from pampero.serving.context import ServingContext, ignored_header, merge
from pampero.serving.generation import (
    Choice,
    Generation,
    OwnedStream,
    run_all,
    speculation_header,
)
from pampero.serving.hub import ServedModel
from pampero.serving.params import (
    check_token_ids,
    no_effect_fields,
    resolve_max_tokens,
    sampling_params,
)
from pampero.serving.responses import (
    CompletionLogprobs,
    Envelope,
    StreamUsage,
    TokenNames,
    Usage,
    clamp,
    completion_id,
    fingerprint,
    prompt_logprobs_body,
)
from pampero.serving.structured import constraint_spec


class CompletionService:
    def __init__(self, context: ServingContext) -> None:
        self.context = context

    async def create(self, parsed: Parsed[CompletionRequest], arrival: float) -> Reply:
        request = parsed.request
        served = self.context.hub.get(request.model)
        tokenizer = served.engine.tokenizer
        names = TokenNames(tokenizer, as_ids=request.return_tokens_as_token_ids)
        spec = constraint_spec(request)
        requests = []
        # Everything that can refuse a prompt runs before the first one is submitted.
        for index, tokens in enumerate(self._prompts(request, tokenizer)):
            params = self._params(served, request, tokens)
            if spec is not None:
                params.constraint = await self.context.constraints.compile(served, spec, params)
            requests.append(
                GenerationRequest(
                    request_id=f"{index}",
                    prompt_tokens=tokens,
                    sampling=params,
                    priority=request.priority,
                    prompt_param="prompt",
                )
            )
        envelope = Envelope(completion_id("cmpl"), served.id, fingerprint(served.id))
        headers = ignored_header([*parsed.ignored, *no_effect_fields(request)])
        # The batch is admitted as a unit, and from here on it lives and dies as one: a failed
        # prompt, or a client that left, aborts every sibling.
        generations = Generation.batch(served, requests, self.context.metrics, arrival)
        if request.stream:
            chunks = _Streamer(request, envelope, names, generations).chunks()
            return Reply(stream=OwnedStream(chunks, generations), headers=headers)
        await run_all(generations)
        headers.update(speculation_header(generations))
        return Reply(body=_body(request, envelope, names, generations), headers=headers)

    def _prompts(self, request: CompletionRequest, tokenizer: Tokenizer) -> list[list[int]]:
        prompts: list[list[int]] = []
        batched = len(request.prompts) > 1
        for prompt in request.prompts:
            if isinstance(prompt, str):
                tokens = tokenizer.encode(prompt, add_special=request.add_special_tokens)
            else:
                tokens = list(prompt)
                param = f"prompt[{len(prompts)}]" if batched else "prompt"
                check_token_ids(tokens, tokenizer, param)
            if request.suffix is not None:
                tokens = _fill_in_the_middle(tokens, request.suffix, tokenizer)
            if request.truncate_prompt_tokens is not None:
                tokens = tokens[-request.truncate_prompt_tokens :]
            prompts.append(tokens)
        return prompts

    def _params(
        self, served: ServedModel, request: CompletionRequest, tokens: list[int]
    ) -> SamplingParams:
        engine = served.engine
        wanted = request.best_of or request.n
        # best_of ranks choices by log-probability, so it needs them even if not returned.
        logprobs = request.logprobs
        if wanted > request.n and logprobs is None:
            logprobs = 0
        params = sampling_params(
            request,
            tokenizer=engine.tokenizer,
            capabilities=engine.capabilities,
            max_tokens=resolve_max_tokens(
                request.max_tokens, len(tokens), engine.capabilities, "max_tokens"
            ),
            logprobs=logprobs,
        )
        params.n = wanted
        if request.echo and request.logprobs is not None:
            params.prompt_logprobs = max(params.prompt_logprobs or 0, request.logprobs)
        return params


def _fill_in_the_middle(prefix: list[int], suffix: str, tokenizer: Tokenizer) -> list[int]:
    if tokenizer.fim_token_ids is None:
        raise UnsupportedParameter(
            "this model has no fill-in-the-middle tokens, so 'suffix' cannot be honoured",
            param="suffix",
        )
    pre, suf, mid = tokenizer.fim_token_ids
    return [pre, *prefix, suf, *tokenizer.encode(suffix, parse_special=False), mid]


def _best(choices: list[Choice], n: int) -> list[Choice]:
    if len(choices) <= n:
        return choices
    ranked = sorted(choices, key=lambda c: sum(lp.logprob for lp in c.logprobs), reverse=True)
    return sorted(ranked[:n], key=lambda c: c.index)


def _body(
    request: CompletionRequest,
    envelope: Envelope,
    names: TokenNames,
    generations: list[Generation],
) -> TextCompletion:
    choices: list[dict[str, Any]] = []
    for p_index, generation in enumerate(generations):
        echo = _echo_text(request, names, generation)
        for position, choice in enumerate(_best(generation.choices, request.n)):
            logprobs = None
            if request.logprobs is not None:
                built = CompletionLogprobs()
                _echo_logprobs(request, names, generation, built)
                built.add(names, choice.logprobs, len(echo))
                logprobs = built.body()
            choices.append(
                {
                    "index": p_index * request.n + position,
                    "text": echo + "".join(choice.text),
                    "logprobs": logprobs,
                    "finish_reason": choice.finish_reason,
                    "stop_reason": choice.stop_reason,
                    "prompt_logprobs": prompt_logprobs_body(
                        names, generation.request.prompt_tokens, generation.prompt_logprobs
                    )
                    if request.prompt_logprobs is not None
                    else None,
                }
            )
    return TextCompletion(
        id=envelope.id,
        object="text_completion",
        created=envelope.created,
        model=envelope.model,
        system_fingerprint=envelope.fingerprint,
        choices=choices,
        usage=total_usage(generations).body(),
    )


def total_usage(generations: list[Generation]) -> Usage:
    usage = Usage()
    for generation in generations:
        usage.add(generation.usage)
    return usage


def _echo_text(request: CompletionRequest, names: TokenNames, generation: Generation) -> str:
    if not request.echo:
        return ""
    return names.tokenizer.decode(generation.request.prompt_tokens, skip_special=False)


def _echo_logprobs(
    request: CompletionRequest, names: TokenNames, generation: Generation, out: CompletionLogprobs
) -> None:
    if not request.echo:
        return
    offset = 0
    entries = generation.prompt_logprobs or []
    for token_id, entry in zip(generation.request.prompt_tokens, entries, strict=False):
        text = names.name(token_id)
        out.tokens.append(text)
        out.token_logprobs.append(None if entry is None else clamp(entry.logprob))
        out.top_logprobs.append(
            None if entry is None else {names.name(t): clamp(lp) for t, lp in entry.top}
        )
        out.text_offset.append(offset)
        offset += len(text)


class _Streamer:
    """The chunks of a streamed completion request (several prompts merge into one stream)."""

    def __init__(
        self,
        request: CompletionRequest,
        envelope: Envelope,
        names: TokenNames,
        generations: list[Generation],
    ) -> None:
        self.request = request
        self.envelope = envelope
        self.names = names
        self.generations = generations
        self.usage = StreamUsage.of(request.stream_options)
        self._offsets: dict[int, int] = {}

    def _chunk(self, choices: list[dict[str, Any]], usage: Usage | None) -> TextCompletion:
        payload = self.envelope.text_completion(choices)
        if self.usage.in_chunks:
            payload["usage"] = usage.body() if usage is not None else None
        return payload

    async def _tagged(self, p_index: int, generation: Generation) -> AsyncIterator[tuple[int, Any]]:
        async for item in generation.events():
            yield p_index, item

    async def chunks(self) -> AsyncIterator[TextCompletion]:
        request = self.request
        if request.echo:
            for p_index, generation in enumerate(self.generations):
                text = _echo_text(request, self.names, generation)
                for i in range(request.n):
                    self._offsets[p_index * request.n + i] = len(text)
                    yield self._chunk(
                        [self._choice(p_index * request.n + i, text, None, None)], None
                    )
        sources = [self._tagged(p, g) for p, g in enumerate(self.generations)]
        async for p_index, engine_event in merge(sources):
            choices = []
            for delta in engine_event.deltas:
                index = p_index * request.n + delta.index
                logprobs = None
                if request.logprobs is not None and delta.logprobs:
                    built = CompletionLogprobs()
                    built.add(self.names, delta.logprobs, self._offsets.get(index, 0))
                    logprobs = built.body()
                self._offsets[index] = self._offsets.get(index, 0) + len(delta.text)
                if delta.text or logprobs is not None or delta.finish_reason is not None:
                    choice = self._choice(index, delta.text, delta.finish_reason, logprobs)
                    choice["stop_reason"] = delta.stop_reason
                    choices.append(choice)
            if choices:
                yield self._chunk(
                    choices, total_usage(self.generations) if self.usage.continuous else None
                )
        if self.usage.include:
            yield self._chunk([], total_usage(self.generations))

    @staticmethod
    def _choice(
        index: int, text: str, finish: str | None, logprobs: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
