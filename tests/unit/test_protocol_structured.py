"""Structured-output fields: response_format, guided_*, structured_outputs (shape only)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pampero.errors import InvalidRequestError
from pampero.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    parse_chat_request,
    parse_completion_request,
)
from pampero.protocol.structured import ResponseFormatJsonSchema

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def chat(**fields: Any) -> ChatCompletionRequest:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], **fields})
    return parse_chat_request(body, strict=True).request


def completion(**fields: Any) -> CompletionRequest:
    body = orjson.dumps({"model": "m", "prompt": "x", **fields})
    return parse_completion_request(body, strict=True).request


def refuse(**fields: Any) -> InvalidRequestError:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], **fields})
    with pytest.raises(InvalidRequestError) as caught:
        parse_chat_request(body, strict=True)
    return caught.value


VALID: list[tuple[str, Any, Any]] = [
    ("guided_json", SCHEMA, SCHEMA),
    ("guided_json", orjson.dumps(SCHEMA).decode(), SCHEMA),
    ("guided_regex", r".*\?$", r".*\?$"),
    ("guided_choice", ["Es un perro.", "Es un gato."], ["Es un perro.", "Es un gato."]),
    ("guided_grammar", 'root ::= "yes" | "no"', 'root ::= "yes" | "no"'),
    ("guided_whitespace_pattern", r"[ \n]*", r"[ \n]*"),
    ("guided_decoding_backend", "xgrammar", "xgrammar"),
]


@pytest.mark.parametrize(("field", "value", "expected"), VALID)
def test_guided_fields(field: str, value: Any, expected: Any) -> None:
    assert getattr(chat(**{field: value}), field) == expected
    assert getattr(completion(**{field: value}), field) == expected


def test_constraint_fields_lists_what_was_asked() -> None:
    assert chat().constraint_fields() == []
    assert chat(response_format={"type": "text"}).constraint_fields() == []
    assert chat(guided_regex="a+").constraint_fields() == ["guided_regex"]
    assert chat(response_format={"type": "json_object"}).constraint_fields() == ["response_format"]


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "n"}},
        {
            "type": "json_schema",
            "json_schema": {"name": "n", "description": "d", "schema": SCHEMA, "strict": True},
        },
    ],
)
def test_response_format_shapes(response_format: dict[str, Any]) -> None:
    request = chat(response_format=response_format)
    assert request.response_format is not None
    assert request.response_format.type == response_format["type"]


def test_json_schema_response_format_keeps_schema_under_its_json_name() -> None:
    request = chat(
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}}
    )
    response_format = request.response_format
    assert isinstance(response_format, ResponseFormatJsonSchema)
    assert response_format.json_schema.schema_ == SCHEMA
    dumped = request.model_dump(exclude_none=True)["response_format"]
    assert dumped == {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}}


@pytest.mark.parametrize(
    ("structured_outputs", "attr", "expected"),
    [
        ({"json": SCHEMA}, "json_", SCHEMA),
        ({"json": orjson.dumps(SCHEMA).decode(), "whitespace_pattern": " ?"}, "json_", SCHEMA),
        ({"regex": "[0-9]+"}, "regex", "[0-9]+"),
        ({"choice": ["a", "b"]}, "choice", ["a", "b"]),
        ({"grammar": "root ::= x"}, "grammar", "root ::= x"),
        ({"json_object": True}, "json_object", True),
    ],
)
def test_structured_outputs(structured_outputs: dict[str, Any], attr: str, expected: Any) -> None:
    request = chat(structured_outputs=structured_outputs)
    assert request.structured_outputs is not None
    assert getattr(request.structured_outputs, attr) == expected


INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"guided_json": "{not json"}, "guided_json", "not valid JSON"),
    ({"guided_json": "[1, 2]"}, "guided_json", "JSON schema object"),
    ({"guided_json": 5}, "guided_json", "a JSON schema (an object, or a string holding one)"),
    ({"guided_json": ["x"]}, "guided_json", "but got an array"),
    ({"guided_regex": 5}, "guided_regex", "expected a string"),
    ({"guided_choice": []}, "guided_choice", "non-empty"),
    ({"guided_choice": "a"}, "guided_choice", "expected an array"),
    ({"guided_choice": ["a", 1]}, "guided_choice[1]", "expected a string"),
    ({"guided_grammar": ""}, "guided_grammar", "non-empty"),
    ({"guided_whitespace_pattern": 1}, "guided_whitespace_pattern", "expected a string"),
    ({"guided_decoding_backend": ""}, "guided_decoding_backend", "non-empty"),
    (
        {"response_format": {"type": "xml"}},
        "response_format.type",
        "'text', 'json_object' or 'json_schema'",
    ),
    ({"response_format": {}}, "response_format.type", "Missing"),
    ({"response_format": "json"}, "response_format", "expected an object"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "Missing"),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "response_format.json_schema.name",
        "Missing",
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": "{}"}}},
        "response_format.json_schema.schema",
        "expected an object",
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": "yes"}}},
        "response_format.json_schema.strict",
        "expected a boolean",
    ),
    ({"structured_outputs": {}}, "structured_outputs", "set one of"),
    ({"structured_outputs": {"whitespace_pattern": " "}}, "structured_outputs", "set one of"),
    ({"structured_outputs": {"json_object": False}}, "structured_outputs", "set one of"),
    (
        {"structured_outputs": {"regex": "a", "choice": ["b"]}},
        "structured_outputs.choice",
        "only one constraint",
    ),
    ({"structured_outputs": {"choice": []}}, "structured_outputs.choice", "non-empty"),
    ({"structured_outputs": {"json": 3}}, "structured_outputs.json", "JSON schema"),
    ({"structured_outputs": "json"}, "structured_outputs", "expected an object"),
    ({"guided_json": SCHEMA, "guided_regex": "a"}, "guided_regex", "Only one"),
    (
        {"guided_choice": ["a"], "structured_outputs": {"regex": "a"}},
        "structured_outputs",
        "Only one",
    ),
    (
        {"response_format": {"type": "json_object"}, "guided_json": SCHEMA},
        "guided_json",
        "'response_format' and 'guided_json'",
    ),
]


@pytest.mark.parametrize(("fields", "param", "fragment"), INVALID)
def test_invalid_structured_outputs(fields: dict[str, Any], param: str, fragment: str) -> None:
    error = refuse(**fields)
    assert error.param == param
    assert fragment in error.message


def test_whitespace_and_backend_options_combine_with_a_constraint() -> None:
    request = chat(
        guided_json=SCHEMA,
        guided_whitespace_pattern=" ?",
        guided_decoding_backend="outlines",
        response_format={"type": "text"},
    )
    assert request.constraint_fields() == ["guided_json"]
