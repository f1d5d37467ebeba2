"""The parsing entry points: JSON decoding, error translation, unknown-field reporting."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from pampero.errors import InvalidRequestError
from pampero.protocol import (
    parse_chat_request,
    parse_completion_request,
    parse_detokenize_request,
    parse_tokenize_request,
)

PARSERS = [
    parse_chat_request,
    parse_completion_request,
    parse_tokenize_request,
    parse_detokenize_request,
]
PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\]|\.[A-Za-z_][A-Za-z0-9_]*)*$")

FULL_CHAT: dict[str, Any] = {
    "model": "Qwen/Qwen3-1.7B",
    "messages": [
        {"role": "system", "content": "s"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe la imagen."},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                {"type": "input_image", "image_url": "data:image/png;base64,AA=="},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ],
    "max_tokens": 50,
    "temperature": 0.7,
    "top_p": 0.9,
    "n": 1,
    "stop": ["\n"],
    "seed": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logit_bias": {"1": 1},
    "logprobs": True,
    "top_logprobs": 2,
    "stream": True,
    "stream_options": {"include_usage": True},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "tool_choice": "auto",
    "top_k": 10,
    "min_p": 0.1,
    "repetition_penalty": 1.1,
    "stop_token_ids": [2],
    "min_tokens": 1,
    "guided_choice": ["a", "b"],
    "priority": 1,
}


def refuse(parser: Any, body: bytes, *, strict: bool = False) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        parser(body, strict=strict)
    assert caught.value.status_code == 400
    assert caught.value.error_type == "invalid_request_error"
    return caught.value


def test_full_chat_request_parses_with_nothing_ignored() -> None:
    parsed = parse_chat_request(orjson.dumps(FULL_CHAT), strict=True)
    assert parsed.ignored == []
    assert parsed.raw == FULL_CHAT


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "could not parse the JSON body"),
        (b"{", "could not parse the JSON body"),
        (b'{"model": "m",}', "could not parse the JSON body"),
        (b"\xff\xfe", "could not parse the JSON body"),
        (b'{"n": NaN}', "could not parse the JSON body"),
        (b"[]", "must be a JSON object, but got an array"),
        (b'"text"', "must be a JSON object, but got a string"),
        (b"null", "must be a JSON object, but got null"),
        (b"42", "must be a JSON object, but got an integer"),
    ],
)
def test_body_must_be_a_json_object(parser: Any, body: bytes, fragment: str) -> None:
    error = refuse(parser, body)
    assert fragment in error.message
    assert error.param is None


def test_missing_model_and_messages_are_named() -> None:
    assert refuse(parse_chat_request, b'{"messages": []}').param == "model"
    assert refuse(parse_chat_request, b'{"model": "m"}').message == (
        "Missing required parameter: 'messages'."
    )
    # A missing required field is reported before other problems it may explain.
    error = refuse(parse_chat_request, b'{"model": "m", "temperature": 9}')
    assert error.param == "messages"


def test_unknown_fields_lenient() -> None:
    body = orjson.dumps(
        {
            "model": "m",
            "foo": 1,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}},
                        {"type": "image_url", "image_url": {"url": "u", "px": 1}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": "y",
                    "weird": True,
                    "tool_calls": [
                        {"id": "c", "function": {"name": "f", "arguments": "{}", "z": 0}}
                    ],
                },
            ],
            "stream": True,
            "stream_options": {"include_usage": True, "extra": 1},
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "q": 1}},
            "tools": [{"type": "function", "function": {"name": "f", "r": 1}}],
            "bar": None,
        }
    )
    parsed = parse_chat_request(body, strict=False)
    assert sorted(parsed.ignored) == [
        "bar",
        "foo",
        "messages[0].content[0].cache_control",
        "messages[0].content[1].image_url.px",
        "messages[1].tool_calls[0].function.z",
        "messages[1].weird",
        "response_format.json_schema.q",
        "stream_options.extra",
        "tools[0].function.r",
    ]
    # Top-level names come first, in the order the client sent them.
    assert parsed.ignored[:2] == ["foo", "bar"]
    # What was ignored is not kept on the model; ``raw`` still has it for a gateway.
    dumped = parsed.request.model_dump()
    assert "foo" not in dumped
    assert "weird" not in dumped["messages"][1]
    assert parsed.raw["foo"] == 1
    assert parsed.request.model_extra == {}


def test_unknown_field_inside_structured_outputs() -> None:
    body = orjson.dumps({"model": "m", "prompt": "x", "structured_outputs": {"regex": "a", "s": 1}})
    assert parse_completion_request(body, strict=False).ignored == ["structured_outputs.s"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "foo": 1}, "foo"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x", "foo": 1}]},
            "messages[0].foo",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": {"url": "u", "foo": 1}}],
                    }
                ],
            },
            "messages[0].content[0].image_url.foo",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "provider": {"sort": "price"},
                "metadata": {"k": "v"},
                "verbosity": "low",
            },
            "verbosity",
        ),
    ],
)
def test_unknown_fields_strict(body: dict[str, Any], param: str) -> None:
    error = refuse(parse_chat_request, orjson.dumps(body), strict=True)
    assert error.param == param
    assert error.message == f"Unrecognized request argument supplied: {param}."


def test_strict_lists_several_unknown_fields() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "a": 1, "b": 2}'
    error = refuse(parse_chat_request, body, strict=True)
    assert error.message == "Unrecognized request arguments supplied: a, b."
    assert error.param == "a"


def test_known_harmless_assistant_fields_are_not_unknown() -> None:
    body = orjson.dumps(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": "y",
                    "refusal": None,
                    "annotations": [],
                    "audio": None,
                    "function_call": None,
                    "tool_calls": [],
                    "reasoning_content": None,
                },
            ],
        }
    )
    assert parse_chat_request(body, strict=True).ignored == []


def test_huge_values_are_never_echoed() -> None:
    huge = "A" * 100_000
    for field in ("temperature", "service_tier", "reasoning_effort"):
        body = orjson.dumps(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], field: huge}
        )
        error = refuse(parse_chat_request, body)
        assert len(error.message) < 300
        assert "A" * 50 not in error.message
    body = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "B" * 100_000: 1}
    )
    error = refuse(parse_chat_request, body, strict=True)
    assert len(error.message) < 300
    assert error.param is not None
    assert len(error.param) < 200
    lenient = parse_chat_request(body, strict=False)
    assert len(lenient.ignored[0]) < 200


def test_long_tool_name_is_clipped_in_message() -> None:
    body = orjson.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "n" * 5000}},
        }
    )
    error = refuse(parse_chat_request, body)
    assert error.param == "tool_choice"
    assert len(error.message) < 300


ODD_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    1.5,
    1e300,
    -1e300,
    "",
    "x" * 5000,
    [],
    [None],
    [[]],
    {},
    {"a": None},
    {"type": 1},
]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index inside ``node``, depth first."""
    children: list[tuple[Any, Any]] = []
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    found = []
    for key, child in children:
        found.append((*path, key))
        found.extend(_paths(child, (*path, key)))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {**node, head: _replace(node[head], rest, value)}
    copy = list(node)
    copy[head] = _replace(node[head], rest, value)
    return copy


def _openai_path(path: tuple[Any, ...]) -> str:
    text = ""
    for item in path:
        text += f"[{item}]" if isinstance(item, int) else (f".{item}" if text else item)
    return text


FUZZ_CHAT = {
    **FULL_CHAT,
    "audio": {"voice": "alloy", "format": "wav"},
    "prediction": {"type": "content", "content": [{"type": "text", "text": "p"}]},
    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
    "guided_choice": None,
    "metadata": {"k": "v"},
    "modalities": ["text"],
}


@pytest.mark.parametrize("path", _paths(FUZZ_CHAT), ids=_openai_path)
def test_every_failure_is_a_400_naming_the_field(path: tuple[Any, ...]) -> None:
    failures = 0
    for value in ODD_VALUES:
        body = orjson.dumps(_replace(FUZZ_CHAT, path, value))
        try:
            parse_chat_request(body, strict=True)
        except InvalidRequestError as error:
            failures += 1
            assert error.status_code == 400
            assert error.param is not None
            assert PARAM.match(error.param), error.param
            # The error names the changed field, one of its parents, or a field that
            # depends on it (e.g. ``top_logprobs`` when ``logprobs`` is broken).
            if path[0] == "messages":
                assert error.param.startswith(_openai_path(path[:2])), error.param
            assert len(error.message) < 400
            assert "Input should" not in error.message
            assert "x" * 100 not in error.message
    if path[0] not in ("provider", "chat_template_kwargs") and path[-1] != "parameters":
        assert failures, "no odd value was refused"


def test_content_part_failures_name_the_part() -> None:
    for value in ODD_VALUES:
        for key in ("type", "text", "image_url"):
            part = {"type": "image_url", "image_url": {"url": "u"}, key: value}
            body = orjson.dumps(
                {"model": "m", "messages": [{"role": "user", "content": ["x", part][1:]}]}
            )
            try:
                parse_chat_request(body, strict=True)
            except InvalidRequestError as error:
                assert error.param is not None
                assert error.param.startswith("messages[0].content[0]"), error.param
                assert PARAM.match(error.param), error.param


@pytest.mark.parametrize(
    ("parser", "document"),
    [
        (parse_chat_request, FUZZ_CHAT),
        (
            parse_chat_request,
            {
                **FULL_CHAT,
                "structured_outputs": {"json": "{}"},
                "guided_choice": None,
                "stream": False,
                "stream_options": None,
                "tool_choice": {"type": "function", "function": {"name": "f"}},
            },
        ),
        (
            parse_completion_request,
            {"model": "m", "prompt": [[1, 2], [3]], "logit_bias": {"3": -1}},
        ),
        (parse_completion_request, {"model": "m", "prompt": ["a", "b"], "max_tokens": None}),
        (parse_tokenize_request, {"messages": [{"role": "user", "content": "x"}]}),
    ],
)
def test_json_dump_round_trips(parser: Any, document: dict[str, Any]) -> None:
    # Serving and the gateway dump requests (logs, upstream calls): the JSON form must parse
    # back to the same request, without serializer warnings (pytest runs with -W error).
    request = parser(orjson.dumps(document), strict=True).request
    dumped = orjson.dumps(request.model_dump(mode="json"))
    assert parser(dumped, strict=True).request == request
