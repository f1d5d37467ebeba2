"""Chat messages and their content parts, as clients send them.

Roles: ``system``, ``developer``, ``user``, ``assistant``, ``tool`` and the legacy
``function``. Content is a string or a non-empty list of typed parts; which part types a role
may carry follows OpenAI (system, developer and tool: text; assistant: text and refusal;
user: text, images, audio and files).

Both image forms normalise to one shape, so ``part.image_url.url`` works for each of::

    {"type": "image_url", "image_url": {"url": "https://...", "detail": "low"}}
    {"type": "image_url", "image_url": "https://..."}
    {"type": "input_image", "image_url": "data:image/jpeg;base64,..."}
    {"type": "input_image", "image_url": {"url": "data:..."}}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from pampero.protocol.common import (
    NonEmptyStr,
    ProtocolModel,
    by_key,
    field_error,
    string_or_list,
    tag,
    tagged_union,
)

ImageDetail = Literal["auto", "low", "high"]


class TextPart(ProtocolModel):
    type: Literal["text"]
    text: str


class RefusalPart(ProtocolModel):
    type: Literal["refusal"]
    refusal: str


class ImageURL(ProtocolModel):
    url: NonEmptyStr
    detail: ImageDetail = "auto"


def _url_object(value: Any) -> Any:
    return {"url": value} if isinstance(value, str) else value


ImageURLField = Annotated[ImageURL, BeforeValidator(_url_object)]


class ImagePart(ProtocolModel):
    """Common base of both image part types; serving reads ``image_url.url`` of either."""

    image_url: ImageURLField


class ImageURLPart(ImagePart):
    type: Literal["image_url"]


class InputImagePart(ImagePart):
    """The Responses-API image form some clients send to chat completions."""

    type: Literal["input_image"]

    @model_validator(mode="before")
    @classmethod
    def _part_level_detail(cls, data: Any) -> Any:
        # The Responses API puts ``detail`` next to ``image_url``; fold it into the URL object
        # so both image part types carry it in the same place.
        if isinstance(data, dict) and "detail" in data:
            data = dict(data)
            detail = data.pop("detail")
            url = data.get("image_url")
            if isinstance(url, str):
                data["image_url"] = {"url": url, "detail": detail}
            elif isinstance(url, dict) and "detail" not in url:
                data["image_url"] = {**url, "detail": detail}
        return data


class InputAudio(ProtocolModel):
    data: str
    format: Literal["wav", "mp3"]


class InputAudioPart(ProtocolModel):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileData(ProtocolModel):
    filename: str | None = None
    file_data: str | None = None
    file_id: str | None = None

    @model_validator(mode="after")
    def _has_source(self) -> FileData:
        if self.file_data is None and self.file_id is None:
            raise field_error("file_data", "A file part needs 'file_data' or 'file_id'.")
        return self


class FilePart(ProtocolModel):
    type: Literal["file"]
    file: FileData


TextOnlyPart = Annotated[
    Annotated[TextPart, tag("text")],
    tagged_union("type", "'text'", by_key("type")),
]
AssistantPart = Annotated[
    Annotated[TextPart, tag("text")] | Annotated[RefusalPart, tag("refusal")],
    tagged_union("type", "'text' or 'refusal'", by_key("type")),
]
UserPart = Annotated[
    Annotated[TextPart, tag("text")]
    | Annotated[ImageURLPart, tag("image_url")]
    | Annotated[InputImagePart, tag("input_image")]
    | Annotated[InputAudioPart, tag("input_audio")]
    | Annotated[FilePart, tag("file")],
    tagged_union(
        "type", "'text', 'image_url', 'input_image', 'input_audio' or 'file'", by_key("type")
    ),
]
ContentPart = TextPart | RefusalPart | ImageURLPart | InputImagePart | InputAudioPart | FilePart

_CONTENT_TYPES = "a string or an array of content parts"

TextContent = Annotated[
    Annotated[str, tag("str")] | Annotated[list[TextOnlyPart], Field(min_length=1), tag("list")],
    tagged_union("", _CONTENT_TYPES, string_or_list),
]
UserContent = Annotated[
    Annotated[str, tag("str")] | Annotated[list[UserPart], Field(min_length=1), tag("list")],
    tagged_union("", _CONTENT_TYPES, string_or_list),
]
AssistantContent = Annotated[
    Annotated[str, tag("str")] | Annotated[list[AssistantPart], Field(min_length=1), tag("list")],
    tagged_union("", _CONTENT_TYPES, string_or_list),
]


class FunctionCall(ProtocolModel):
    name: NonEmptyStr
    # A JSON-encoded string, as the model produced it; not parsed here because models do emit
    # invalid JSON and clients send it back verbatim.
    arguments: str


class ToolCall(ProtocolModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    # Clients that accumulate streamed deltas often send the chunk's ``index`` back.
    index: int | None = None


class AudioRef(ProtocolModel):
    id: str


class SystemMessage(ProtocolModel):
    role: Literal["system"]
    content: TextContent
    name: str | None = None


class DeveloperMessage(ProtocolModel):
    role: Literal["developer"]
    content: TextContent
    name: str | None = None


class UserMessage(ProtocolModel):
    role: Literal["user"]
    content: UserContent
    name: str | None = None


class AssistantMessage(ProtocolModel):
    role: Literal["assistant"]
    content: AssistantContent | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    # Known so that assistant turns copied from a response round-trip without being reported
    # as unknown: OpenAI's ``refusal``/``annotations``/``audio``, vLLM's reasoning fields.
    refusal: str | None = None
    annotations: list[Any] | None = None
    audio: AudioRef | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None

    @model_validator(mode="after")
    def _has_payload(self) -> AssistantMessage:
        if self.content is None and not (
            self.tool_calls or self.function_call or self.refusal is not None or self.audio
        ):
            raise field_error(
                "content",
                "An assistant message needs 'content' unless it carries 'tool_calls', "
                "'function_call', 'refusal' or 'audio'.",
            )
        return self


class ToolMessage(ProtocolModel):
    role: Literal["tool"]
    content: TextContent
    tool_call_id: str


class FunctionMessage(ProtocolModel):
    """The legacy result of a ``function_call`` (superseded by tool messages)."""

    role: Literal["function"]
    content: str | None
    name: NonEmptyStr


ChatMessage = Annotated[
    Annotated[SystemMessage, tag("system")]
    | Annotated[DeveloperMessage, tag("developer")]
    | Annotated[UserMessage, tag("user")]
    | Annotated[AssistantMessage, tag("assistant")]
    | Annotated[ToolMessage, tag("tool")]
    | Annotated[FunctionMessage, tag("function")],
    tagged_union(
        "role",
        "'system', 'developer', 'user', 'assistant', 'tool' or 'function'",
        by_key("role"),
    ),
]
Message = (
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage
)


class ChatTemplateFields(ProtocolModel):
    """The conversation and the fields that shape how it is rendered into a prompt; shared by
    ``/v1/chat/completions`` and the messages form of ``/tokenize``."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    # Parsed so serving can refuse it with a clear error: pampero renders only server-side
    # templates and never runs template code a client sent.
    chat_template: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    documents: list[dict[str, str]] | None = None

    @model_validator(mode="after")
    def _check_continuation(self) -> ChatTemplateFields:
        if not self.continue_final_message:
            return self
        if self.add_generation_prompt:
            raise field_error(
                "continue_final_message",
                "Invalid value for 'continue_final_message': it cannot be true together with "
                "'add_generation_prompt' (set 'add_generation_prompt' to false).",
            )
        if self.messages[-1].role != "assistant":
            raise field_error(
                "continue_final_message",
                "Invalid value for 'continue_final_message': the last message must be an "
                "assistant message to continue.",
            )
        return self
