"""``POST /v1/chat/completions``: OpenAI's request plus vLLM's extras and the gateway's
``provider``.

Example::

    parsed = parse_chat_request(body, strict=False)
    request = parsed.request
    request.messages[0].content, request.max_output_tokens, request.resolved_tool_choice
    parsed.ignored  # ["messages[0].foo", "bar"]: fields pampero does not know
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pampero.protocol.common import (
    MAX_LOGPROBS,
    GenerationFields,
    NonEmptyStr,
    ProtocolModel,
    clip,
    field_error,
    string_or_list,
    string_or_object,
    tag,
    tagged_union,
)
from pampero.protocol.messages import ChatTemplateFields, TextPart
from pampero.protocol.parsing import Parsed, parse_model
from pampero.protocol.structured import StructuredOutputFields
from pampero.protocol.tools import FunctionCallChoice, Functions, NamedToolChoice, ToolChoice, Tools

ServiceTier = Literal["auto", "default", "flex", "scale", "priority", "fast"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class Prediction(ProtocolModel):
    """OpenAI's predicted output (speculative decoding hint)."""

    type: Literal["content"]
    content: Annotated[
        Annotated[str, tag("str")] | Annotated[list[TextPart], Field(min_length=1), tag("list")],
        tagged_union("", "a string or an array of text parts", string_or_list),
    ]


class CustomVoice(ProtocolModel):
    id: NonEmptyStr


class AudioOutput(ProtocolModel):
    """OpenAI's audio output parameters; only the shape is checked (serving refuses audio)."""

    voice: Annotated[
        Annotated[NonEmptyStr, tag("str")] | Annotated[CustomVoice, tag("object")],
        tagged_union("", "a voice name or an object with an 'id'", string_or_object),
    ]
    format: Literal["wav", "aac", "mp3", "flac", "opus", "pcm16"]


class ChatCompletionRequest(ChatTemplateFields, StructuredOutputFields, GenerationFields):
    """A chat completion request. See ``GenerationFields`` for the sampling fields."""

    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None

    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: Functions | None = None
    function_call: FunctionCallChoice | None = None

    service_tier: ServiceTier | None = None
    metadata: (
        Annotated[
            dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
            Field(max_length=16),
        ]
        | None
    ) = None
    store: bool | None = None
    reasoning_effort: ReasoningEffort | None = None
    prediction: Prediction | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOutput | None = None
    safety_identifier: Annotated[str, Field(max_length=64)] | None = None
    prompt_cache_key: str | None = None

    echo: bool = False
    add_special_tokens: bool = False
    include_reasoning: bool = True

    @property
    def max_output_tokens(self) -> int | None:
        """The completion budget; ``None`` means "up to the end of the context"."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    @property
    def resolved_tool_choice(self) -> Literal["none", "auto", "required"] | NamedToolChoice:
        """``tool_choice`` with OpenAI's default filled in: ``auto`` when tools are given. The
        legacy ``functions`` / ``function_call`` pair maps onto it the same way."""
        if self.tool_choice is not None:
            return self.tool_choice
        if self.functions:
            legacy = self.function_call
            if legacy is None:
                return "auto"
            if isinstance(legacy, str):
                return legacy
            return NamedToolChoice(type="function", function=legacy)
        return "auto" if self.tools else "none"

    @model_validator(mode="after")
    def _check_chat(self) -> ChatCompletionRequest:
        self._check_token_budget()
        if self.top_logprobs is not None and not self.logprobs:
            raise field_error(
                "top_logprobs",
                "Invalid value for 'top_logprobs': 'logprobs' must be true when "
                "'top_logprobs' is set.",
            )
        self._check_tools()
        self._check_functions()
        return self

    def _check_token_budget(self) -> None:
        if (
            self.max_tokens is not None
            and self.max_completion_tokens is not None
            and self.max_tokens != self.max_completion_tokens
        ):
            raise field_error(
                "max_completion_tokens",
                "Invalid value for 'max_completion_tokens': it differs from 'max_tokens'; "
                "send only 'max_completion_tokens' ('max_tokens' is its deprecated name).",
            )
        param = "max_tokens" if self.max_completion_tokens is None else "max_completion_tokens"
        self.check_min_tokens(self.max_output_tokens, param)

    def _check_tools(self) -> None:
        choice = self.tool_choice
        if choice is None or choice == "none":
            return
        if not self.tools:
            raise field_error(
                "tool_choice",
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
            )
        if isinstance(choice, NamedToolChoice):
            names = {tool.function.name for tool in self.tools}
            if choice.function.name not in names:
                raise field_error(
                    "tool_choice",
                    f"Invalid value for 'tool_choice': no tool named "
                    f"{clip(choice.function.name)!r} in 'tools'.",
                )

    def _check_functions(self) -> None:
        if self.functions is not None and self.tools is not None:
            raise field_error(
                "functions",
                "Invalid value for 'functions': send either 'tools' or the deprecated "
                "'functions', not both.",
            )
        choice = self.function_call
        if choice is None or choice == "none":
            return
        if self.functions is None:
            raise field_error(
                "function_call",
                "Invalid value for 'function_call': 'function_call' is only allowed when "
                "'functions' are specified.",
            )
        if not isinstance(choice, str) and choice.name not in {f.name for f in self.functions}:
            raise field_error(
                "function_call",
                f"Invalid value for 'function_call': no function named "
                f"{clip(choice.name)!r} in 'functions'.",
            )


def parse_chat_request(body: bytes, *, strict: bool) -> Parsed[ChatCompletionRequest]:
    """Parse a ``/v1/chat/completions`` body.

    Raises ``InvalidRequestError`` naming the offending field; with ``strict``, unknown
    fields are errors too, otherwise they are listed in ``Parsed.ignored``.
    """
    return parse_model(ChatCompletionRequest, body, strict=strict)
