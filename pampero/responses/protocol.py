"""``POST /v1/responses``: OpenAI's Responses request, validated like every other request.

The same rules as chat hold (``pampero.protocol.common``): strict JSON types, every error a
400 naming the field by its path (``input[2].content[0].image_url``), unknown fields listed in
``x-pampero-ignored-params`` (or, with ``--strict-params``, refused).

Example::

    parsed = parse_response_request(body, strict=False)
    parsed.request.input          # a string, or a list of items (messages, function calls,
                                  # function call outputs, reasoning)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, model_validator

from pampero.protocol.common import (
    NonEmptyStr,
    ProtocolModel,
    clip,
    field_error,
    string_or_list,
    string_or_object,
    tag,
    tagged_union,
)
from pampero.protocol.parsing import Parsed, parse_model

ImageDetail = Literal["auto", "low", "high"]


def _item_type(value: Any) -> str | None:
    """Items are tagged by ``type``; a message may leave it out (OpenAI's easy input form), and
    so may an item reference (``{"id": "msg_..."}``: an id and no role)."""
    if isinstance(value, dict):
        found = value.get("type")
        if found is None:
            found = "item_reference" if "id" in value and "role" not in value else "message"
    else:
        found = getattr(value, "type", None)
    return f"<{found}>" if isinstance(found, str) else None


def _part_type(value: Any) -> str | None:
    found = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"<{found}>" if isinstance(found, str) else None


class InputText(ProtocolModel):
    type: Literal["input_text"]
    text: str


class InputImage(ProtocolModel):
    type: Literal["input_image"]
    image_url: NonEmptyStr | None = None
    file_id: str | None = None
    detail: ImageDetail = "auto"

    @model_validator(mode="after")
    def _has_url(self) -> InputImage:
        if self.image_url is None:
            # File ids name OpenAI's file store, which pampero does not have.
            raise field_error(
                "image_url",
                "An input_image needs an 'image_url' (an http(s) URL or a data URI); "
                "'file_id' is not supported.",
            )
        return self


class InputFile(ProtocolModel):
    type: Literal["input_file"]
    file_data: str | None = None
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None


class OutputText(ProtocolModel):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(ProtocolModel):
    type: Literal["refusal"]
    refusal: str


class ReasoningText(ProtocolModel):
    type: Literal["reasoning_text", "summary_text"]
    text: str


_INPUT_PARTS = "'input_text', 'input_image' or 'input_file'"
InputPart = Annotated[
    Annotated[InputText, tag("input_text")]
    | Annotated[InputImage, tag("input_image")]
    | Annotated[InputFile, tag("input_file")],
    tagged_union("type", _INPUT_PARTS, _part_type),
]
AnyPart = Annotated[
    Annotated[InputText, tag("input_text")]
    | Annotated[InputImage, tag("input_image")]
    | Annotated[InputFile, tag("input_file")]
    | Annotated[OutputText, tag("output_text")]
    | Annotated[Refusal, tag("refusal")],
    tagged_union("type", f"{_INPUT_PARTS}, 'output_text' or 'refusal'", _part_type),
]
MessageContent = Annotated[
    Annotated[str, tag("str")] | Annotated[list[AnyPart], Field(min_length=1), tag("list")],
    tagged_union("", "a string or an array of content parts", string_or_list),
]
ToolOutput = Annotated[
    Annotated[str, tag("str")] | Annotated[list[InputPart], tag("list")],
    tagged_union("", "a string or an array of content parts", string_or_list),
]


class MessageItem(ProtocolModel):
    """A message: the easy form (``{"role", "content"}``), an input message, or an assistant
    message as a previous response returned it."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: MessageContent
    id: str | None = None
    status: str | None = None
    phase: str | None = None

    @model_validator(mode="after")
    def _parts_fit_role(self) -> MessageItem:
        if isinstance(self.content, str):
            return self
        assistant = self.role == "assistant"
        for index, part in enumerate(self.content):
            output = isinstance(part, OutputText | Refusal)
            if output != assistant and not (assistant and isinstance(part, InputText)):
                allowed = "'output_text' or 'refusal'" if assistant else _INPUT_PARTS
                raise field_error(
                    f"content[{index}].type",
                    f"Invalid value for 'content[{index}].type': a {self.role} message takes "
                    f"{allowed} parts, not {part.type!r}.",
                )
        return self


class FunctionCallItem(ProtocolModel):
    type: Literal["function_call"]
    call_id: NonEmptyStr
    name: NonEmptyStr
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(ProtocolModel):
    type: Literal["function_call_output"]
    call_id: NonEmptyStr
    output: ToolOutput
    id: str | None = None
    status: str | None = None


class ReasoningItem(ProtocolModel):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[ReasoningText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    status: str | None = None

    @property
    def text(self) -> str:
        parts = self.content or self.summary
        return "".join(part.text for part in parts)


class ItemReference(ProtocolModel):
    """An item of a stored response (its input or its output), named by its id."""

    type: Literal["item_reference"] | None = "item_reference"
    id: NonEmptyStr


_ITEM_TYPES = "'message', 'function_call', 'function_call_output' or 'reasoning'"
StoredItem = Annotated[
    Annotated[MessageItem, tag("message")]
    | Annotated[FunctionCallItem, tag("function_call")]
    | Annotated[FunctionCallOutputItem, tag("function_call_output")]
    | Annotated[ReasoningItem, tag("reasoning")],
    tagged_union("type", _ITEM_TYPES, _item_type),
]
InputItem = Annotated[
    Annotated[MessageItem, tag("message")]
    | Annotated[FunctionCallItem, tag("function_call")]
    | Annotated[FunctionCallOutputItem, tag("function_call_output")]
    | Annotated[ReasoningItem, tag("reasoning")]
    | Annotated[ItemReference, tag("item_reference")],
    tagged_union(
        "type",
        "'message', 'function_call', 'function_call_output', 'reasoning' or 'item_reference'",
        _item_type,
    ),
]
Item = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem
ITEMS: TypeAdapter[list[Item]] = TypeAdapter(list[StoredItem])


class FunctionTool(ProtocolModel):
    """The Responses API's flattened function tool (no nested ``function`` object)."""

    type: Literal["function"]
    name: NonEmptyStr
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(ProtocolModel):
    type: Literal["function"]
    name: NonEmptyStr


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], tag("str")]
    | Annotated[NamedFunction, tag("object")],
    tagged_union(
        "", "'none', 'auto', 'required' or {'type': 'function', 'name': ...}", string_or_object
    ),
]


class FormatText(ProtocolModel):
    type: Literal["text"]


class FormatJsonObject(ProtocolModel):
    type: Literal["json_object"]


class FormatJsonSchema(ProtocolModel):
    type: Literal["json_schema"]
    name: NonEmptyStr
    # ``schema`` would shadow a BaseModel attribute, hence the alias.
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[
    Annotated[FormatText, tag("text")]
    | Annotated[FormatJsonObject, tag("json_object")]
    | Annotated[FormatJsonSchema, tag("json_schema")],
    tagged_union("type", "'text', 'json_object' or 'json_schema'", _part_type),
]


class TextOptions(ProtocolModel):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningOptions(ProtocolModel):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(ProtocolModel):
    include_obfuscation: bool | None = None


Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
]

# Sampling fields of pampero's chat endpoint (vLLM's extras) a Responses request may also
# carry; the chat request they are handed to validates them.
CHAT_EXTRAS = (
    "seed",
    "top_k",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "logit_bias",
    "priority",
)


class CreateResponseRequest(ProtocolModel):
    """A ``POST /v1/responses`` body."""

    model: NonEmptyStr
    input: (
        Annotated[
            Annotated[str, tag("str")] | Annotated[list[InputItem], tag("list")],
            tagged_union("", "a string or an array of input items", string_or_list),
        ]
        | None
    ) = None
    instructions: str | None = None
    previous_response_id: NonEmptyStr | None = None
    store: bool = True
    stream: bool = False
    stream_options: StreamOptions | None = None

    tools: Annotated[list[FunctionTool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: Annotated[int, Field(ge=1)] | None = None

    text: TextOptions | None = None
    reasoning: ReasoningOptions | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    include: list[str] | None = None
    metadata: Metadata | None = None

    truncation: Literal["auto", "disabled"] | None = None
    background: bool | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None
    user: str | None = None
    safety_identifier: Annotated[str, Field(max_length=64)] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    # Known so that they are refused by name rather than reported as unknown.
    conversation: Any = None
    prompt: Any = None
    context_management: Any = None
    moderation: Any = None

    seed: Any = None
    top_k: Any = None
    min_p: Any = None
    repetition_penalty: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    stop: Any = None
    logit_bias: Any = None
    priority: Any = None

    @model_validator(mode="after")
    def _check(self) -> CreateResponseRequest:
        if self.input is None and self.previous_response_id is None:
            raise field_error("input", "Missing required parameter: 'input'.")
        if self.stream_options is not None and not self.stream:
            raise field_error(
                "stream_options",
                "Invalid value for 'stream_options': 'stream_options' is only allowed when "
                "'stream' is true.",
            )
        choice = self.tool_choice
        if isinstance(choice, NamedFunction):
            if choice.name not in {tool.name for tool in self.tools or ()}:
                raise field_error(
                    "tool_choice",
                    f"Invalid value for 'tool_choice': no tool named {clip(choice.name)!r} "
                    "in 'tools'.",
                )
        elif choice == "required" and not self.tools:
            raise field_error(
                "tool_choice",
                "Invalid value for 'tool_choice': 'required' needs at least one tool in 'tools'.",
            )
        return self

    @property
    def input_items(self) -> list[Item | ItemReference]:
        """``input`` as a list of items (a string is one user message)."""
        if self.input is None:
            return []
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)


def parse_response_request(body: bytes, *, strict: bool) -> Parsed[CreateResponseRequest]:
    """Parse a ``/v1/responses`` body; see the module docstring."""
    return parse_model(CreateResponseRequest, body, strict=strict)
