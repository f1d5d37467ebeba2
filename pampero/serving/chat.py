"""``POST /v1/chat/completions`` (also ``/chat/completions`` and ``/functions/v1/...``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pampero.engines.base import EngineEvent, GenerationRequest
from pampero.errors import InvalidRequestError, UnsupportedParameter
from pampero.protocol import ChatCompletionRequest, Parsed
from pampero.serving.context import Result, ServingContext, ignored_header
from pampero.serving.generation import Generation
from pampero.serving.params import (
    no_effect_fields,
    resolve_max_tokens,
    sampling_params,
)
from pampero.serving.prompt import Prompter
from pampero.serving.responses import (
    Envelope,
    TokenNames,
    chat_logprobs,
    completion_id,
    fingerprint,
    prompt_logprobs_body,
)
from pampero.serving.sse import DONE, event, stream_errors
from pampero.serving.structured import constraint_spec


class ChatService:
    def __init__(self, context: ServingContext) -> None:
        self.context = context
        self._prompters: dict[str, Prompter] = {}

    def prompter(self, model_id: str) -> Prompter:
        served = self.context.hub.get(model_id)
        if served.id not in self._prompters:
            self._prompters[served.id] = Prompter(served, self.context.settings)
        return self._prompters[served.id]

    async def create(self, parsed: Parsed[ChatCompletionRequest], arrival: float) -> Result:
        request = parsed.request
        served = self.context.hub.get(request.model)
        _refuse_unavailable(request)
        engine = served.engine
        prompt = self.prompter(request.model).chat_tokens(request)
        if request.truncate_prompt_tokens is not None:
            prompt = prompt[-request.truncate_prompt_tokens :]
        budget_param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        params = sampling_params(
            request,
            tokenizer=engine.tokenizer,
            capabilities=engine.capabilities,
            max_tokens=resolve_max_tokens(
                request.max_output_tokens, len(prompt), engine.capabilities, budget_param
            ),
            logprobs=(request.top_logprobs or 0) if request.logprobs else None,
        )
        spec = constraint_spec(request)
        if spec is not None:
            await self.context.constraints.compile(served, spec, params)
        generation = Generation(
            served,
            GenerationRequest(
                request_id=request.request_id or "",
                prompt_tokens=prompt,
                sampling=params,
                priority=request.priority,
            ),
            self.context.metrics,
            arrival,
        )
        envelope = Envelope(completion_id("chatcmpl"), served.id, fingerprint(served.id))
        names = TokenNames(engine.tokenizer, as_ids=request.return_tokens_as_token_ids)
        headers = ignored_header([*parsed.ignored, *no_effect_fields(request)])
        if request.stream:
            streamer = _ChatStreamer(request, envelope, names, generation)
            return Result(stream=stream_errors(streamer.chunks()), headers=headers)
        await generation.run()
        return Result(body=_body(request, envelope, names, generation), headers=headers)


def _refuse_unavailable(request: ChatCompletionRequest) -> None:
    if request.chat_template is not None:
        raise InvalidRequestError(
            "a request may not carry its own chat template: pampero never runs template code "
            "sent by clients; the server operator can set a template per model",
            param="chat_template",
        )
    if (request.modalities and "audio" in request.modalities) or request.audio is not None:
        raise UnsupportedParameter("audio output is not available", param="modalities")
    choice = request.tool_choice
    if (request.tools and choice != "none") or (
        request.functions and request.function_call != "none"
    ):
        raise UnsupportedParameter(
            "tool calling is not available on this server yet; send tool_choice 'none' to "
            "only render the tools into the prompt",
            param="tools" if request.tools else "functions",
        )


def _echo_prefix(request: ChatCompletionRequest) -> str:
    last = request.messages[-1]
    if not request.echo or last.role != "assistant":
        return ""
    content = getattr(last, "content", None)
    if isinstance(content, str):
        return content
    return "".join(getattr(part, "text", "") for part in content or [])


def _body(
    request: ChatCompletionRequest, envelope: Envelope, names: TokenNames, generation: Generation
) -> dict[str, Any]:
    prefix = _echo_prefix(request)
    choices = []
    for choice in generation.choices:
        choices.append(
            {
                "index": choice.index,
                "message": {
                    "role": "assistant",
                    "content": prefix + "".join(choice.text),
                    "reasoning_content": None,
                    "tool_calls": [],
                    "refusal": None,
                },
                "logprobs": chat_logprobs(names, choice.logprobs) if request.logprobs else None,
                "finish_reason": choice.finish_reason,
                "stop_reason": choice.stop_reason,
            }
        )
    return {
        "id": envelope.id,
        "object": "chat.completion",
        "created": envelope.created,
        "model": envelope.model,
        "system_fingerprint": envelope.fingerprint,
        "choices": choices,
        "usage": generation.usage.body(),
        "prompt_logprobs": prompt_logprobs_body(
            names, generation.request.prompt_tokens, generation.prompt_logprobs
        ),
        "service_tier": None,
    }


class _ChatStreamer:
    """The SSE chunks of one chat completion, framed as OpenAI does."""

    def __init__(
        self,
        request: ChatCompletionRequest,
        envelope: Envelope,
        names: TokenNames,
        generation: Generation,
    ) -> None:
        self.request = request
        self.envelope = envelope
        self.names = names
        self.generation = generation
        options = request.stream_options
        self.include_usage = bool(options and options.include_usage)
        self.continuous_usage = bool(options and options.continuous_usage_stats)

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload: dict[str, Any] = {
            "id": self.envelope.id,
            "object": "chat.completion.chunk",
            "created": self.envelope.created,
            "model": self.envelope.model,
            "system_fingerprint": self.envelope.fingerprint,
            "choices": choices,
        }
        if self.include_usage or self.continuous_usage:
            payload["usage"] = self.generation.usage.body() if self.continuous_usage else None
        payload.update(extra)
        return event(payload)

    async def chunks(self) -> AsyncIterator[bytes]:
        prefix = _echo_prefix(self.request)
        for index in range(self.request.n):
            yield self._chunk([_choice(index, {"role": "assistant", "content": ""})])
            if prefix:
                yield self._chunk([_choice(index, {"content": prefix})])
        first = True
        async for engine_event in self.generation.events():
            for chunk in self._event_chunks(engine_event, first):
                yield chunk
            first = False
        if self.include_usage:
            yield self._chunk([], usage=self.generation.usage.body())
        yield DONE

    def _event_chunks(self, engine_event: EngineEvent, first: bool) -> list[bytes]:
        out: list[bytes] = []
        extra: dict[str, Any] = {}
        if first and self.request.prompt_logprobs is not None:
            extra["prompt_logprobs"] = prompt_logprobs_body(
                self.names, self.generation.request.prompt_tokens, engine_event.prompt_logprobs
            )
        for delta in engine_event.deltas:
            logprobs = (
                chat_logprobs(self.names, delta.logprobs)
                if self.request.logprobs and delta.logprobs
                else None
            )
            if delta.text or logprobs is not None:
                choice = _choice(delta.index, {"content": delta.text})
                choice["logprobs"] = logprobs
                out.append(self._chunk([choice], **extra))
                extra = {}
            if delta.finish_reason is not None:
                choice = _choice(delta.index, {})
                choice["finish_reason"] = delta.finish_reason
                choice["stop_reason"] = delta.stop_reason
                out.append(self._chunk([choice], **extra))
                extra = {}
        return out


def _choice(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
