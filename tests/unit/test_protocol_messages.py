"""Chat messages: roles, content forms, content-part shapes, tool calls."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pampero.errors import InvalidRequestError
from pampero.protocol import ChatCompletionRequest, parse_chat_request
from pampero.protocol.messages import (
    AssistantMessage,
    FilePart,
    FunctionMessage,
    ImagePart,
    ImageURLPart,
    InputAudioPart,
    InputImagePart,
    RefusalPart,
    TextPart,
    ToolMessage,
    UserMessage,
)

DATA_URL = "data:image/jpeg;base64,/9j/4AAQSkZJRg=="
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Rosario"}'},
}


def parse(*messages: dict[str, Any]) -> ChatCompletionRequest:
    body = orjson.dumps({"model": "m", "messages": list(messages)})
    return parse_chat_request(body, strict=True).request


def refuse(*messages: Any) -> InvalidRequestError:
    body = orjson.dumps({"model": "m", "messages": list(messages)})
    with pytest.raises(InvalidRequestError) as caught:
        parse_chat_request(body, strict=True)
    return caught.value


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


def test_every_role() -> None:
    request = parse(
        {"role": "system", "content": "Eres un asistente útil.", "name": "sys"},
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "¿Qué hora es?", "name": "ana"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
        {"role": "assistant", "content": "Son las 12."},
        {"role": "function", "name": "lookup", "content": "{}"},
    )
    roles = [m.role for m in request.messages]
    assert roles == ["system", "developer", "user", "assistant", "tool", "assistant", "function"]
    assert request.messages[0].content == "Eres un asistente útil."
    assert isinstance(request.messages[2], UserMessage)
    assert request.messages[2].name == "ana"
    tool = request.messages[4]
    assert isinstance(tool, ToolMessage)
    assert tool.tool_call_id == "call_1"
    assert isinstance(request.messages[6], FunctionMessage)


def test_seed_image_url_part() -> None:
    request = parse(
        user(
            {"type": "text", "text": "Qué hay en esta imagen?"},
            {"type": "image_url", "image_url": {"url": "https://i.imgur.com/IqAOn4t.jpeg"}},
        )
    )
    content = request.messages[0].content
    assert isinstance(content, list)
    text, image = content
    assert isinstance(text, TextPart)
    assert text.text == "Qué hay en esta imagen?"
    assert isinstance(image, ImageURLPart)
    assert image.image_url.url == "https://i.imgur.com/IqAOn4t.jpeg"
    assert image.image_url.detail == "auto"


@pytest.mark.parametrize(
    ("part", "kind", "detail"),
    [
        (
            {"type": "image_url", "image_url": {"url": DATA_URL, "detail": "low"}},
            ImageURLPart,
            "low",
        ),
        ({"type": "image_url", "image_url": DATA_URL}, ImageURLPart, "auto"),
        ({"type": "input_image", "image_url": DATA_URL}, InputImagePart, "auto"),
        ({"type": "input_image", "image_url": {"url": DATA_URL}}, InputImagePart, "auto"),
        ({"type": "input_image", "image_url": DATA_URL, "detail": "high"}, InputImagePart, "high"),
        (
            {
                "type": "input_image",
                "image_url": {"url": DATA_URL, "detail": "low"},
                "detail": "high",
            },
            InputImagePart,
            "low",
        ),
    ],
)
def test_image_forms_share_one_shape(part: dict[str, Any], kind: type, detail: str) -> None:
    content = parse(user(part)).messages[0].content
    assert isinstance(content, list)
    image = content[0]
    assert isinstance(image, kind)
    assert isinstance(image, ImagePart)
    assert image.image_url.url == DATA_URL
    assert image.image_url.detail == detail


def test_audio_and_file_parts() -> None:
    content = (
        parse(
            user(
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {
                    "type": "file",
                    "file": {"filename": "a.pdf", "file_data": "data:application/pdf;,"},
                },
                {"type": "file", "file": {"file_id": "file-1"}},
            )
        )
        .messages[0]
        .content
    )
    assert isinstance(content, list)
    audio, pdf, ref = content
    assert isinstance(audio, InputAudioPart)
    assert audio.input_audio.format == "wav"
    assert isinstance(pdf, FilePart)
    assert pdf.file.filename == "a.pdf"
    assert isinstance(ref, FilePart)
    assert ref.file.file_id == "file-1"


def test_assistant_message_round_trip_fields() -> None:
    # An assistant turn copied from a response, with every field clients echo back.
    message = {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hi"}, {"type": "refusal", "refusal": "No."}],
        "refusal": None,
        "annotations": [],
        "audio": None,
        "function_call": None,
        "tool_calls": [{**CALL, "index": 0}],
        "reasoning_content": "thinking",
        "reasoning": None,
        "name": "bot",
    }
    parsed = parse_chat_request(
        orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}, message]}),
        strict=True,
    )
    assert parsed.ignored == []
    assistant = parsed.request.messages[1]
    assert isinstance(assistant, AssistantMessage)
    assert assistant.reasoning_content == "thinking"
    assert assistant.tool_calls is not None
    call = assistant.tool_calls[0]
    assert (call.id, call.type, call.index) == ("call_1", "function", 0)
    assert call.function.arguments == '{"city": "Rosario"}'
    assert isinstance(assistant.content, list)
    assert isinstance(assistant.content[1], RefusalPart)


@pytest.mark.parametrize(
    "message",
    [
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "assistant", "content": None, "refusal": "I can't."},
        {"role": "assistant", "content": None, "audio": {"id": "audio_1"}},
        {"role": "assistant", "content": ""},
    ],
)
def test_assistant_content_may_be_null_with_another_payload(message: dict[str, Any]) -> None:
    assert parse(message).messages[0].role == "assistant"


INVALID: list[tuple[Any, str, str]] = [
    ("hola", "messages[0]", "expected an object, but got a string"),
    ({"content": "x"}, "messages[0].role", "Missing required parameter"),
    ({"role": "bot", "content": "x"}, "messages[0].role", "'user', 'assistant'"),
    ({"role": 1, "content": "x"}, "messages[0].role", "but got 1 instead"),
    ({"role": "user"}, "messages[0].content", "Missing required parameter"),
    ({"role": "user", "content": None}, "messages[0].content", "but got null"),
    (
        {"role": "user", "content": 3},
        "messages[0].content",
        "expected a string or an array of content parts, but got an integer",
    ),
    ({"role": "user", "content": []}, "messages[0].content", "non-empty"),
    ({"role": "user", "content": ["hi"]}, "messages[0].content[0]", "expected an object"),
    ({"role": "user", "content": [{"text": "x"}]}, "messages[0].content[0].type", "Missing"),
    (
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "x"}}]},
        "messages[0].content[0].type",
        "'text', 'image_url', 'input_image', 'input_audio' or 'file'",
    ),
    ({"role": "user", "content": [{"type": "text"}]}, "messages[0].content[0].text", "Missing"),
    (
        {"role": "user", "content": [{"type": "text", "text": 5}]},
        "messages[0].content[0].text",
        "expected a string",
    ),
    (
        {"role": "user", "content": [{"type": "image_url"}]},
        "messages[0].content[0].image_url",
        "Missing",
    ),
    (
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": ""}}]},
        "messages[0].content[0].image_url.url",
        "non-empty",
    ),
    (
        {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
        "messages[0].content[0].image_url.url",
        "Missing",
    ),
    (
        {"role": "user", "content": [{"type": "image_url", "image_url": 5}]},
        "messages[0].content[0].image_url",
        "expected an object",
    ),
    (
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "x", "detail": "max"}}],
        },
        "messages[0].content[0].image_url.detail",
        "'auto', 'low' or 'high'",
    ),
    (
        {"role": "user", "content": [{"type": "input_image"}]},
        "messages[0].content[0].image_url",
        "Missing",
    ),
    (
        {
            "role": "user",
            "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "ogg"}}],
        },
        "messages[0].content[0].input_audio.format",
        "'wav' or 'mp3'",
    ),
    (
        {"role": "user", "content": [{"type": "file", "file": {"filename": "a"}}]},
        "messages[0].content[0].file.file_data",
        "'file_data' or 'file_id'",
    ),
    (
        {"role": "user", "content": [{"type": "refusal", "refusal": "x"}]},
        "messages[0].content[0].type",
        "expected 'text', 'image_url'",
    ),
    (
        {"role": "system", "content": [{"type": "image_url", "image_url": "x"}]},
        "messages[0].content[0].type",
        "expected 'text', but got 'image_url'",
    ),
    ({"role": "developer", "content": None}, "messages[0].content", "but got null"),
    (
        {"role": "assistant", "content": [{"type": "image_url", "image_url": "x"}]},
        "messages[0].content[0].type",
        "'text' or 'refusal'",
    ),
    ({"role": "assistant"}, "messages[0].content", "needs 'content'"),
    (
        {"role": "assistant", "content": None, "tool_calls": []},
        "messages[0].content",
        "needs 'content'",
    ),
    (
        {"role": "assistant", "tool_calls": [{"type": "function"}]},
        "messages[0].tool_calls[0].id",
        "Missing",
    ),
    (
        {"role": "assistant", "tool_calls": [{**CALL, "type": "custom"}]},
        "messages[0].tool_calls[0].type",
        "'function'",
    ),
    (
        {
            "role": "assistant",
            "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {"a": 1}}}],
        },
        "messages[0].tool_calls[0].function.arguments",
        "expected a string, but got an object",
    ),
    ({"role": "assistant", "tool_calls": "x"}, "messages[0].tool_calls", "expected an array"),
    (
        {"role": "assistant", "content": "x", "reasoning_content": 1},
        "messages[0].reasoning_content",
        "expected a string",
    ),
    ({"role": "tool", "content": "x"}, "messages[0].tool_call_id", "Missing"),
    (
        {"role": "tool", "content": "x", "tool_call_id": 1},
        "messages[0].tool_call_id",
        "expected a string",
    ),
    (
        {"role": "tool", "tool_call_id": "c", "content": [{"type": "image_url", "image_url": "x"}]},
        "messages[0].content[0].type",
        "expected 'text'",
    ),
    ({"role": "function", "content": "x"}, "messages[0].name", "Missing"),
    ({"role": "user", "content": "x", "name": 1}, "messages[0].name", "expected a string"),
]


@pytest.mark.parametrize(("message", "param", "fragment"), INVALID)
def test_invalid_messages(message: Any, param: str, fragment: str) -> None:
    error = refuse(message)
    assert error.param == param
    assert fragment in error.message


def test_param_names_the_right_message_index() -> None:
    error = refuse(
        {"role": "user", "content": "ok"},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}],
        },
    )
    assert error.param == "messages[2].content[1].image_url.url"
