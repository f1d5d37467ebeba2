"""``POST /v1/chat/completions`` (also ``/chat/completions`` and ``/functions/v1/...``)."""

from __future__ import annotations

import secrets
from typing import Any

from pampero.errors import InvalidRequestError, UnsupportedParameter
from pampero.inference import GenerationRequest, SamplingParams
from pampero.media import LoadedImage, image_parts
from pampero.protocol import ChatCompletionRequest, Parsed
from pampero.protocol.replies import ChatCompletion, Reply
from pampero.serving.chat_stream import ChatStreamer, message_body, replay_chunks
from pampero.serving.checked import run_checked
from pampero.serving.context import ServingContext, ignored_header
from pampero.serving.generation import Generation, OwnedStream, speculation_header
from pampero.serving.hub import ServedModel
from pampero.serving.params import no_effect_fields, resolve_max_tokens, sampling_params
from pampero.serving.prompt import Prompter
from pampero.serving.responses import (
    Envelope,
    TokenNames,
    chat_logprobs,
    completion_id,
    fingerprint,
    prompt_logprobs_body,
)
from pampero.serving.tools import ToolPlan, constrain, plan_tools


class ChatService:
    def __init__(self, context: ServingContext) -> None:
        self.context = context
        self._prompters: dict[str, Prompter] = {}

    def prompter(self, model_id: str) -> Prompter:
        served = self.context.hub.get(model_id)
        if served.id not in self._prompters:
            self._prompters[served.id] = Prompter(served, self.context.settings)
        return self._prompters[served.id]

    async def create(self, parsed: Parsed[ChatCompletionRequest], arrival: float) -> Reply:
        request = parsed.request
        served = self.context.hub.get(request.model)
        _refuse_unavailable(request)
        engine = served.engine
        prompter = self.prompter(request.model)
        marker = _image_marker(request, served)
        rendered = prompter.render(request, image_marker=marker)
        images = (
            [loaded.image for loaded in await self._images(request)] if marker is not None else []
        )
        plan = plan_tools(request, served, prompter.source, rendered.text, engine.tokenizer)
        prompt = rendered.tokens
        if request.truncate_prompt_tokens is not None:
            prompt = prompt[-request.truncate_prompt_tokens :]
        params = self._params(request, served, prompt)
        await self._constrain(request, served, plan, params)
        generation = Generation(
            served,
            GenerationRequest(
                request_id=request.request_id or "",
                prompt_tokens=prompt,
                sampling=params,
                priority=request.priority,
                images=images,
            ),
            self.context.metrics,
            arrival,
        )
        envelope = Envelope(completion_id("chatcmpl"), served.id, fingerprint(served.id))
        names = TokenNames(engine.tokenizer, as_ids=request.return_tokens_as_token_ids)
        unused = prompter.unused_fields(request)
        headers = ignored_header([*parsed.ignored, *no_effect_fields(request), *unused])
        constraint = params.constraint
        check = getattr(constraint, "check_after", None)
        if check is not None:  # a relaxed non-strict schema: check, then answer (or replay)
            headers |= await run_checked(
                generation,
                check,
                lambda choice: message_body(request, plan, choice)[0]["content"],
                getattr(constraint, "param", "response_format"),
            )
            body = _body(request, envelope, names, generation, plan)
            if request.stream:
                return Reply(stream=replay_chunks(request, envelope, body), headers=headers)
            return Reply(body=body, headers=headers)
        if request.stream:
            if images:  # see Generation.wait_started
                await generation.wait_started()
            streamer = ChatStreamer(request, envelope, names, generation, plan)
            return Reply(stream=OwnedStream(streamer.chunks(), [generation]), headers=headers)
        await generation.run()
        headers.update(speculation_header([generation]))
        return Reply(body=_body(request, envelope, names, generation, plan), headers=headers)

    async def _images(self, request: ChatCompletionRequest) -> list[LoadedImage]:
        return await self.context.images.collect_images(request.messages, self.context.media_policy)

    def _params(
        self, request: ChatCompletionRequest, served: ServedModel, prompt: list[int]
    ) -> SamplingParams:
        engine = served.engine
        budget_param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        return sampling_params(
            request,
            tokenizer=engine.tokenizer,
            capabilities=engine.capabilities,
            max_tokens=resolve_max_tokens(
                request.max_output_tokens, len(prompt), engine.capabilities, budget_param
            ),
            logprobs=(request.top_logprobs or 0) if request.logprobs else None,
        )

    async def _constrain(
        self,
        request: ChatCompletionRequest,
        served: ServedModel,
        plan: ToolPlan,
        params: SamplingParams,
    ) -> None:
        params.keep_special_ids = plan.keep_ids
        for token in plan.banned_ids:
            params.logit_bias[token] = float("-inf")
        params.constraint = await constrain(plan, request, served, self.context.constraints, params)


def _image_marker(request: ChatCompletionRequest, served: ServedModel) -> str | None:
    """A fresh stand-in for image parts (None when there are none). Random per request, so
    no client text can forge one; a text-only model refuses image parts while rendering."""
    parts = image_parts(request.messages)
    if not parts or not served.engine.capabilities.supports_images:
        return None
    for name in ("truncate_prompt_tokens", "prompt_logprobs"):
        if getattr(request, name) is not None:
            raise UnsupportedParameter(f"{name} cannot be combined with image input", param=name)
    return f"<image-{secrets.token_hex(8)}>"


def _refuse_unavailable(request: ChatCompletionRequest) -> None:
    if request.chat_template is not None:
        raise InvalidRequestError(
            "a request may not carry its own chat template: pampero never runs template code "
            "sent by clients; the server operator can set a template per model",
            param="chat_template",
        )
    if (request.modalities and "audio" in request.modalities) or request.audio is not None:
        raise UnsupportedParameter("audio output is not available", param="modalities")


def _body(
    request: ChatCompletionRequest,
    envelope: Envelope,
    names: TokenNames,
    generation: Generation,
    plan: ToolPlan,
) -> ChatCompletion:
    choices = []
    reasoning_tokens = 0
    for choice in generation.choices:
        message, finish, reasoning = message_body(request, plan, choice)
        reasoning_tokens += _count(names, reasoning)
        choices.append(
            {
                "index": choice.index,
                "message": message,
                "logprobs": _logprobs(request, names, choice.logprobs),
                "finish_reason": finish,
                "stop_reason": choice.stop_reason,
            }
        )
    usage = generation.usage.body()
    usage["completion_tokens_details"]["reasoning_tokens"] = reasoning_tokens
    return ChatCompletion(
        id=envelope.id,
        object="chat.completion",
        created=envelope.created,
        model=envelope.model,
        system_fingerprint=envelope.fingerprint,
        choices=choices,
        usage=usage,
        prompt_logprobs=prompt_logprobs_body(
            names, generation.request.prompt_tokens, generation.prompt_logprobs
        ),
        service_tier=None,
    )


def _logprobs(
    request: ChatCompletionRequest, names: TokenNames, entries: list[Any]
) -> dict[str, Any] | None:
    return chat_logprobs(names, entries) if request.logprobs else None


def _count(names: TokenNames, text: str) -> int:
    return len(names.tokenizer.encode(text, parse_special=False)) if text else 0
