"""``tests.spec.validate``: OpenAI's schemas accept what they should and reject the rest."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from tests.spec.validate import COMPONENTS, SpecMismatch, schema_names, validate_against

VLLM_EXTRAS = {"reasoning_content", "stop_reason", "prompt_logprobs"}

COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-ec1e82a53ab04d20b5560ec4c6b1f16a",
    "object": "chat.completion",
    "created": 1748351434,
    "model": "Qwen/Qwen3-1.7B",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "¡Hola!",
                "refusal": None,
                "reasoning_content": "thinking",
                "tool_calls": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": None,
        }
    ],
    "usage": {"prompt_tokens": 14, "completion_tokens": 216, "total_tokens": 230},
    "prompt_logprobs": None,
}

CHUNK: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1748351434,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "Ho"},
            "logprobs": None,
            "finish_reason": None,
        }
    ],
}

TEXT_COMPLETION: dict[str, Any] = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "text": " there", "logprobs": None, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 16, "total_tokens": 17},
}


def broken(document: dict[str, Any], path: list[Any], value: Any = ...) -> dict[str, Any]:
    """A copy of ``document`` with ``path`` removed (no value) or set to ``value``."""
    result = copy.deepcopy(document)
    node = result
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return result


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ("CreateChatCompletionResponse", COMPLETION),
        ("CreateChatCompletionStreamResponse", CHUNK),
        (
            "CreateChatCompletionStreamResponse",
            {**CHUNK, "choices": [], "usage": COMPLETION["usage"]},
        ),
        (
            "CreateChatCompletionStreamResponse",
            broken(CHUNK, ["choices", 0, "finish_reason"], "stop"),
        ),
        ("CreateCompletionResponse", TEXT_COMPLETION),
        (
            "ListModelsResponse",
            {
                "object": "list",
                "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "pampero"}],
            },
        ),
        ("Model", {"id": "m", "object": "model", "created": 0, "owned_by": "pampero"}),
        (
            "ErrorResponse",
            {
                "error": {
                    "message": "bad",
                    "type": "invalid_request_error",
                    "param": "temperature",
                    "code": None,
                }
            },
        ),
    ],
)
def test_accepts_valid_documents(schema: str, instance: dict[str, Any]) -> None:
    validate_against(schema, instance)


@pytest.mark.parametrize(
    ("schema", "instance", "fragment"),
    [
        (
            "CreateChatCompletionResponse",
            broken(COMPLETION, ["choices"]),
            "'choices' is a required property",
        ),
        (
            "CreateChatCompletionResponse",
            broken(COMPLETION, ["object"], "chat.completions"),
            "$.object",
        ),
        (
            "CreateChatCompletionResponse",
            broken(COMPLETION, ["choices", 0, "finish_reason"], "done"),
            "finish_reason",
        ),
        (
            "CreateChatCompletionResponse",
            broken(COMPLETION, ["choices", 0, "message", "role"], "user"),
            "$.choices[0]",
        ),
        (
            "CreateChatCompletionResponse",
            broken(COMPLETION, ["usage", "total_tokens"], "230"),
            "$.usage.total_tokens",
        ),
        (
            "CreateChatCompletionStreamResponse",
            broken(CHUNK, ["object"], "chat.completion"),
            "$.object",
        ),
        (
            "CreateChatCompletionStreamResponse",
            broken(CHUNK, ["choices", 0, "delta"]),
            "'delta' is a required property",
        ),
        ("CreateChatCompletionStreamResponse", broken(CHUNK, ["created"], 1.5), "$.created"),
        (
            "CreateCompletionResponse",
            broken(TEXT_COMPLETION, ["choices", 0, "text"]),
            "'text' is a required property",
        ),
        (
            "ErrorResponse",
            {"error": {"message": "bad", "type": "x"}},
            "'param' is a required property",
        ),
        ("Model", {"id": "m", "object": "models", "created": 0, "owned_by": "x"}, "$.object"),
    ],
)
def test_rejects_broken_documents(schema: str, instance: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpecMismatch) as caught:
        validate_against(schema, instance)
    message = str(caught.value)
    assert message.startswith(f"{schema} mismatch at ")
    assert fragment in message


def test_spec_permits_additional_properties() -> None:
    # OpenAI's response schemas leave objects open: vLLM's extras pass as written.
    validate_against("CreateChatCompletionResponse", COMPLETION)


def test_closed_mode_names_each_unexpected_field() -> None:
    validate_against("CreateChatCompletionResponse", COMPLETION, allow_extra=VLLM_EXTRAS)
    with pytest.raises(SpecMismatch) as caught:
        validate_against("CreateChatCompletionResponse", COMPLETION, allow_extra=())
    message = str(caught.value)
    for name in VLLM_EXTRAS:
        assert repr(name) in message


def test_null_usage_details_are_not_in_the_spec() -> None:
    # vLLM sends ``"prompt_tokens_details": null``; OpenAI's schema wants an object or nothing.
    instance = broken(COMPLETION, ["usage", "prompt_tokens_details"], None)
    with pytest.raises(SpecMismatch, match="prompt_tokens_details"):
        validate_against("CreateChatCompletionResponse", instance)


def test_nullable_is_converted() -> None:
    # ``finish_reason`` in chunks is ``nullable: true`` in the spec (OpenAPI 3.0 style).
    validate_against(
        "CreateChatCompletionStreamResponse", broken(CHUNK, ["choices", 0, "finish_reason"], None)
    )
    validate_against("CreateChatCompletionStreamResponse", {**CHUNK, "usage": None})


def test_unknown_schema_name() -> None:
    with pytest.raises(KeyError, match="CreateChatCompletionResponse"):
        validate_against("NoSuchSchema", {})


def test_extracted_components_hold_every_root_and_reference() -> None:
    document = json.loads(COMPONENTS.read_text())
    names = set(schema_names())
    assert set(document["roots"]) <= names
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', COMPONENTS.read_text()))
    assert referenced <= names
    assert names == referenced | set(document["roots"])
    assert COMPONENTS.with_name("LICENSE-openai-openapi").exists()
