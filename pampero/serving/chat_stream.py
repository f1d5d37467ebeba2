"""A chat completion's output as OpenAI shapes it: the message of a response, or its chunks.

Both paths run the same output parser (reasoning, tool calls) over the generated text; the
message of a non-streamed response is the stream folded, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pampero.inference import EngineEvent, SequenceDelta
from pampero.parsers import OutputParser, ParsedDelta, parse_all
from pampero.protocol import ChatCompletionRequest
from pampero.protocol.replies import ChatCompletion, ChatCompletionChunk
from pampero.serving.generation import Choice, Generation
from pampero.serving.responses import (
    Envelope,
    StreamUsage,
    TokenNames,
    chat_logprobs,
    prompt_logprobs_body,
)
from pampero.serving.tools import ToolPlan, final_message_text


def echo_prefix(request: ChatCompletionRequest) -> str:
    """vLLM's ``echo``: the final assistant message the model continues, repeated."""
    if not request.echo or request.messages[-1].role != "assistant":
        return ""
    return final_message_text(request)


def _finish_reason(request: ChatCompletionRequest, reason: str | None, calls: bool) -> str | None:
    if calls and reason == "stop":
        return "function_call" if request.functions else "tool_calls"
    return reason


def message_body(
    request: ChatCompletionRequest, plan: ToolPlan, choice: Choice
) -> tuple[dict[str, Any], str | None, str]:
    """The ``message`` of one choice, its finish reason, and its reasoning text."""
    text = "".join(choice.text)
    if plan.parses:
        parsed = parse_all(plan.new_parser(), text)
        content, reasoning = parsed.content, parsed.reasoning
        calls = [call.to_openai() for call in parsed.tool_calls]
    else:
        content, reasoning, calls = text, "", []
    content = echo_prefix(request) + content
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content if content or not calls else None,
        "reasoning_content": reasoning or None,
        "reasoning": reasoning or None,
        "tool_calls": calls,
        "refusal": None,
    }
    if request.functions and calls:  # the legacy API answers with one function_call
        message["function_call"] = calls[0]["function"]
        message["tool_calls"] = []
    return message, _finish_reason(request, choice.finish_reason, bool(calls)), reasoning


class ChatStreamer:
    """The chunks of one streamed chat completion, as OpenAI shapes them."""

    def __init__(
        self,
        request: ChatCompletionRequest,
        envelope: Envelope,
        names: TokenNames,
        generation: Generation,
        plan: ToolPlan,
    ) -> None:
        self.request = request
        self.envelope = envelope
        self.names = names
        self.generation = generation
        self.plan = plan
        self.usage = StreamUsage.of(request.stream_options)
        n = request.n
        self.parsers: list[OutputParser | None] = [
            plan.new_parser() if plan.parses else None for _ in range(n)
        ]
        self.reasoning_text = [""] * n

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> ChatCompletionChunk:
        payload = self.envelope.chat_chunk(choices)
        if self.usage.in_chunks:
            payload["usage"] = self._usage() if self.usage.continuous else None
        payload.update(extra)  # type: ignore[typeddict-item]
        return payload

    def _usage(self) -> dict[str, Any]:
        usage = self.generation.usage.body()
        tokenizer = self.names.tokenizer
        usage["completion_tokens_details"]["reasoning_tokens"] = sum(
            len(tokenizer.encode(text, parse_special=False)) for text in self.reasoning_text if text
        )
        return usage

    async def chunks(self) -> AsyncIterator[ChatCompletionChunk]:
        prefix = echo_prefix(self.request)
        for index in range(self.request.n):
            yield self._chunk([_choice(index, {"role": "assistant", "content": ""})])
            if prefix:
                yield self._chunk([_choice(index, {"content": prefix})])
        first = True
        async for engine_event in self.generation.events():
            for chunk in self._event_chunks(engine_event, first):
                yield chunk
            first = False
        if self.usage.include:
            yield self._chunk([], usage=self._usage())

    def _event_chunks(self, engine_event: EngineEvent, first: bool) -> list[ChatCompletionChunk]:
        out: list[ChatCompletionChunk] = []
        extra: dict[str, Any] = {}
        if first and self.request.prompt_logprobs is not None:
            extra["prompt_logprobs"] = prompt_logprobs_body(
                self.names, self.generation.request.prompt_tokens, engine_event.prompt_logprobs
            )
        for delta in engine_event.deltas:
            for choice in self._delta_choices(delta):
                out.append(self._chunk([choice], **extra))
                extra = {}
        return out

    def _delta_choices(self, delta: SequenceDelta) -> list[dict[str, Any]]:
        """The chunk choices one engine delta makes: content/tool pieces, then the finish."""
        parser = self.parsers[delta.index]
        logprobs = (
            chat_logprobs(self.names, delta.logprobs)
            if self.request.logprobs and delta.logprobs
            else None
        )
        pieces = [parser.feed(delta.text)] if parser is not None else []
        if parser is not None and delta.finish_reason is not None:
            pieces.append(parser.finish())
        choices = []
        if parser is None:
            if delta.text or logprobs is not None:
                choices.append(_with(_choice(delta.index, {"content": delta.text}), logprobs))
        else:
            for piece in pieces:
                body = self._piece(delta.index, piece)
                if body or logprobs is not None:
                    choices.append(_with(_choice(delta.index, body), logprobs))
                    logprobs = None
            if logprobs is not None:
                choices.append(_with(_choice(delta.index, {}), logprobs))
        if delta.finish_reason is not None:
            calls = parser is not None and parser.tool_calls_found
            choice = _choice(delta.index, {})
            choice["finish_reason"] = _finish_reason(self.request, delta.finish_reason, calls)
            choice["stop_reason"] = delta.stop_reason
            choices.append(choice)
        return choices

    def _piece(self, index: int, piece: ParsedDelta) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if piece.reasoning:
            self.reasoning_text[index] += piece.reasoning
            body["reasoning_content"] = piece.reasoning
            body["reasoning"] = piece.reasoning
        if piece.content:
            body["content"] = piece.content
        if piece.tool_calls:
            calls = [call.to_openai() for call in piece.tool_calls]
            if self.request.functions:  # the legacy API streams function_call pieces
                body["function_call"] = calls[0]["function"]
            else:
                body["tool_calls"] = calls
        return body


async def replay_chunks(
    request: ChatCompletionRequest, envelope: Envelope, body: ChatCompletion
) -> AsyncIterator[ChatCompletionChunk]:
    """A finished completion as the chunks a stream of it carries (for answers that had to be
    complete before any of them could be sent): per choice the role, reasoning, content with
    its logprobs, tool calls and finish; then usage as ``stream_options`` asks."""
    stream_usage = StreamUsage.of(request.stream_options)
    usage = body.get("usage")

    def chunk(choices: list[dict[str, Any]]) -> ChatCompletionChunk:
        payload = envelope.chat_chunk(choices)
        if stream_usage.in_chunks:
            payload["usage"] = usage if stream_usage.continuous else None
        return payload

    for choice in body["choices"]:
        index, message = choice["index"], choice["message"]
        yield chunk([_choice(index, {"role": "assistant", "content": ""})])
        if message.get("reasoning_content"):
            reasoning = message["reasoning_content"]
            yield chunk([_choice(index, {"reasoning_content": reasoning, "reasoning": reasoning})])
        if message.get("content"):
            content = _choice(index, {"content": message["content"]})
            yield chunk([_with(content, choice["logprobs"])])
        for position, call in enumerate(message.get("tool_calls") or ()):
            yield chunk([_choice(index, {"tool_calls": [{**call, "index": position}]})])
        finish = _choice(index, {})
        finish["finish_reason"] = choice["finish_reason"]
        finish["stop_reason"] = choice.get("stop_reason")
        yield chunk([finish])
    if stream_usage.include:
        last = chunk([])
        last["usage"] = usage
        yield last


def _choice(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}


def _with(choice: dict[str, Any], logprobs: dict[str, Any] | None) -> dict[str, Any]:
    choice["logprobs"] = logprobs
    return choice
