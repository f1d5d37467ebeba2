"""From a parsed request to the engine's ``SamplingParams``, checked against the model.

Every field either takes effect or is refused here with a 400 naming it; fields that by their
nature change nothing for a local model (``user``, ``metadata``, ...) are reported back in the
``x-pampero-ignored-params`` header instead of being dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable

from pampero.errors import ContextLengthExceeded, InvalidRequestError, UnsupportedParameter
from pampero.inference import Capabilities, SamplingParams, SpeculativeParams, Tokenizer
from pampero.protocol.common import GenerationFields
from pampero.sampling import processors

# Accepted, meaningful elsewhere (billing, routing, caching hints), no effect on a local model.
NO_EFFECT_FIELDS = (
    "user",
    "metadata",
    "store",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "prediction",
    "provider",
    "models",
    "request_id",
)


def no_effect_fields(request: GenerationFields) -> list[str]:
    """Fields that were sent but change nothing for a local model."""
    sent = request.model_fields_set
    return [name for name in NO_EFFECT_FIELDS if name in sent]


def check_token_ids(ids: Iterable[int], tokenizer: Tokenizer, param: str) -> None:
    for i, token in enumerate(ids):
        if not 0 <= token < tokenizer.vocab_size:
            raise InvalidRequestError(
                f"token id {token} is outside this model's vocabulary "
                f"(0..{tokenizer.vocab_size - 1})",
                param=f"{param}[{i}]",
            )


def resolve_max_tokens(
    requested: int | None, n_prompt: int, capabilities: Capabilities, param: str
) -> int:
    """The completion budget; ``None`` means up to the end of the context."""
    room = capabilities.context_length - n_prompt
    if room < 1 or (requested is not None and requested > room):
        wanted = f"{requested} completion tokens" if requested is not None else "1 completion token"
        raise ContextLengthExceeded(
            f"This model's maximum context length is {capabilities.context_length} tokens. "
            f"However, you requested {n_prompt + (requested or 1)} tokens ({n_prompt} in the "
            f"prompt, {wanted}). Please reduce the length of the prompt or of '{param}'.",
            param=param if room >= 1 else "messages",
        )
    return requested if requested is not None else room


def sampling_params(
    request: GenerationFields,
    *,
    tokenizer: Tokenizer,
    capabilities: Capabilities,
    max_tokens: int,
    logprobs: int | None,
) -> SamplingParams:
    """Build the engine's parameters; raise 400 for anything this model cannot honour."""
    _check_beam_search(request, capabilities)
    if logprobs is not None and not capabilities.supports_logprobs:
        raise UnsupportedParameter("this model cannot return logprobs", param="logprobs")
    if request.prompt_logprobs is not None and not capabilities.supports_prompt_logprobs:
        raise UnsupportedParameter(
            "this model cannot return prompt_logprobs", param="prompt_logprobs"
        )
    check_token_ids(request.stop_token_ids, tokenizer, "stop_token_ids")
    check_token_ids(request.allowed_token_ids or (), tokenizer, "allowed_token_ids")
    bias = request.logit_bias or {}
    check_token_ids(bias.keys(), tokenizer, "logit_bias")
    if request.min_tokens > max_tokens:
        raise InvalidRequestError(
            f"min_tokens ({request.min_tokens}) is larger than the completion budget "
            f"({max_tokens})",
            param="min_tokens",
        )
    names = request.logits_processors or []
    return SamplingParams(
        n=request.n,
        max_tokens=max_tokens,
        min_tokens=request.min_tokens,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        top_k=0 if request.top_k in (None, -1) else request.top_k,
        min_p=request.min_p or 0.0,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        repetition_penalty=request.repetition_penalty or 1.0,
        logit_bias=dict(bias),
        allowed_token_ids=request.allowed_token_ids,
        seed=request.seed,
        stop=list(request.stop),
        stop_token_ids=list(request.stop_token_ids),
        include_stop_str_in_output=request.include_stop_str_in_output,
        ignore_eos=request.ignore_eos,
        logprobs=logprobs,
        prompt_logprobs=request.prompt_logprobs,
        skip_special_tokens=request.skip_special_tokens,
        spaces_between_special_tokens=request.spaces_between_special_tokens,
        use_beam_search=request.use_beam_search,
        length_penalty=request.length_penalty,
        logits_processors=processors.build(names, tokenizer) if names else [],
        speculative=_speculative(request, capabilities),
    )


def _speculative(request: GenerationFields, capabilities: Capabilities) -> SpeculativeParams | None:
    spec = request.speculative
    if spec is None:
        return None  # the engine's default (settings: speculative_method)
    if spec.method != "none" and not capabilities.supports_speculative:
        raise UnsupportedParameter(
            "speculative decoding is not available for this model's engine", param="speculative"
        )
    if spec.method == "draft" and not capabilities.has_draft_model:
        raise UnsupportedParameter(
            "speculative method 'draft' needs a draft model, and this model has none (start "
            "the server with --draft-model FILE after its --model); 'ngram' needs none",
            param="speculative.method",
        )
    if spec.method != "none" and request.use_beam_search:
        raise InvalidRequestError(
            "speculative decoding cannot be combined with beam search", param="speculative"
        )
    return SpeculativeParams(spec.method, spec.num_tokens)


def _check_beam_search(request: GenerationFields, capabilities: Capabilities) -> None:
    if request.use_beam_search and not capabilities.supports_beam_search:
        raise UnsupportedParameter(
            "use_beam_search is not available for this model's engine", param="use_beam_search"
        )
    if request.length_penalty != 1.0 and not request.use_beam_search:
        raise InvalidRequestError(
            "length_penalty only applies to beam search; set use_beam_search to true or leave "
            "length_penalty at 1.0",
            param="length_penalty",
        )
