"""OpenAI's strict / non-strict schema semantics on the real model.

Without ``strict: true`` (and for ``guided_json``), a schema with keywords no backend enforces
is served: what can be enforced is, the rest is checked after generation against the full
schema (the header ``x-pampero-schema-checked-after`` names it) with bounded resampling, and an
output that still fails is a 422, never a 200. With ``strict: true`` the same schema is a 400.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.e2e.harness import check_error

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
COLOURS = {
    "type": "array",
    "items": {"enum": ["red", "green", "blue"]},
    "minItems": 3,
    "maxItems": 3,
    "uniqueItems": True,
}
ASK = "List the three primary colours of light (red, green, blue) as a JSON array."
# Satisfiable by nothing: every attempt fails the check, so the answer must be a 422.
# One digit (minimum/maximum are enforced), so no attempt is ever cut by max_tokens, which
# would return the cut answer instead of resampling it.
IMPOSSIBLE = {"type": "integer", "minimum": 0, "maximum": 9, "not": {"type": "integer"}}
LOOKAHEAD = {
    "type": "object",
    "properties": {"code": {"type": "string", "pattern": "^(?=.*[0-9])[a-z0-9]{4,8}$"}},
    "required": ["code"],
    "additionalProperties": False,
}


def response_format(schema, *, strict=None):
    spec = {"name": "answer", "schema": schema}
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def checked(response, schema, keyword):
    assert response.status_code == 200, response.text
    assert keyword in response.headers["x-pampero-schema-checked-after"]
    assert 1 <= int(response.headers["x-pampero-schema-attempts"]) <= 3
    body = response.json()
    text = body["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(text), schema)  # the full schema, keyword included
    return body


def test_a_keyword_no_backend_enforces_is_checked_after_generation(api):
    body = api.chat_body(ASK, {"max_tokens": 40, "response_format": response_format(COLOURS)})
    checked(api.post(CHAT, body), COLOURS, "uniqueItems")


def test_guided_json_is_not_strict_either(api):
    body = api.chat_body(ASK, {"max_tokens": 40, "guided_json": COLOURS})
    checked(api.post(CHAT, body), COLOURS, "uniqueItems")


def test_strict_refuses_the_keyword_it_cannot_enforce(api):
    body = api.chat_body(ASK, {"response_format": response_format(COLOURS, strict=True)})
    error = api.error(CHAT, body, 400)
    assert error["param"] == "response_format.json_schema.schema"
    assert "uniqueItems" in error["message"]


def test_an_output_that_never_conforms_is_a_422_and_the_server_goes_on(api):
    body = api.chat_body("Give me a number.", {"max_tokens": 24, "guided_json": IMPOSSIBLE})
    error = check_error(api.post(CHAT, body), 422)
    assert error["code"] == "output_schema_mismatch"
    assert error["param"] == "guided_json"
    assert "after 3 attempt" in error["message"] and "not" in error["message"]
    api.chat("Hi")


def test_a_lookahead_pattern_is_checked_not_refused(api):
    ask = "Invent a short lowercase code with letters and at least one digit, as JSON."
    body = api.chat_body(ask, {"max_tokens": 30, "response_format": response_format(LOOKAHEAD)})
    response = api.post(CHAT, body)
    if response.status_code == 422:  # three honest misses; never an invalid 200
        assert check_error(response, 422)["code"] == "output_schema_mismatch"
        return
    if response.status_code == 200 and response.json()["choices"][0]["finish_reason"] == "length":
        return  # cut by max_tokens, and saying so
    checked(response, LOOKAHEAD, "pattern")


def test_a_streamed_checked_answer_is_sent_once_checked(api):
    body = api.chat_body(
        ASK,
        {
            "max_tokens": 40,
            "stream": True,
            "stream_options": {"include_usage": True},
            "response_format": response_format(COLOURS),
        },
    )
    with api.http.stream("POST", CHAT, json=body) as response:
        assert response.status_code == 200
        assert "uniqueItems" in response.headers["x-pampero-schema-checked-after"]
        raw = b"".join(response.iter_raw())
    result = api.stream_chat(
        ASK,
        max_tokens=40,
        **{
            "stream_options": {"include_usage": True},
            "response_format": response_format(COLOURS),
        },
    )
    assert raw.endswith(b"data: [DONE]\n\n")
    text = result.texts()[0]
    jsonschema.validate(json.loads(text), COLOURS)
    assert result.usage is not None and result.usage["completion_tokens"] > 0
    non_streamed = api.chat(ASK, max_tokens=40, response_format=response_format(COLOURS))
    assert non_streamed["choices"][0]["message"]["content"] == text


# Well-formed schemas past the server's limits (JSONSchemaBench Github_medium caps a body at
# 128 KiB; a schema nested 140 levels deep): strict, a 400; without strict, served, with what
# was dropped checked after generation.
CAPPED = {
    "type": "object",
    "properties": {"title": {"type": "string", "maxLength": 131072}},
    "required": ["title"],
}


def nested(depth):
    schema = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def test_a_schema_past_the_limits_is_served_without_strict(api):
    ask = "Give a short title for a blog post about bread, as JSON."
    body = api.chat_body(ask, {"max_tokens": 40, "response_format": response_format(CAPPED)})
    response = api.post(CHAT, body)
    if response.status_code == 200 and response.json()["choices"][0]["finish_reason"] == "length":
        assert "maxLength" in response.headers["x-pampero-schema-checked-after"]
    else:
        checked(response, CAPPED, "maxLength")
    strict = api.chat_body(ask, {"response_format": response_format(CAPPED, strict=True)})
    error = api.error(CHAT, strict, 400)
    assert "131072" in error["message"] and error["code"] == "unsupported_parameter"


def test_a_schema_nested_past_the_limits_is_never_a_400_without_strict(api):
    deep = nested(70)  # 140 levels of JSON, over the limit of 128
    body = api.chat_body("Answer with JSON.", {"max_tokens": 20, "guided_json": deep})
    response = api.post(CHAT, body)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert "top-level type" in response.headers["x-pampero-schema-checked-after"]
    strict = {"response_format": response_format(deep, strict=True)}
    assert "nests deeper" in api.error(CHAT, api.chat_body("Hi", strict), 400)["message"]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def test_tools_with_a_non_strict_answer_schema_relax_it_too(api):
    # Calls and the answer are one grammar; without strict on the answer format, what the
    # grammar cannot hold (uniqueItems) is dropped from it and checked after generation.
    fields = {"max_tokens": 40, "tools": [WEATHER], "response_format": response_format(COLOURS)}
    response = api.post(CHAT, api.chat_body(ASK, fields))
    if response.status_code == 422:  # three honest misses; never an invalid 200
        assert check_error(response, 422)["code"] == "output_schema_mismatch"
    else:
        assert response.status_code == 200, response.text
        assert "uniqueItems" in response.headers["x-pampero-schema-checked-after"]
        choice = response.json()["choices"][0]
        if choice["finish_reason"] == "stop":
            jsonschema.validate(json.loads(choice["message"]["content"]), COLOURS)
        else:
            assert choice["finish_reason"] in ("tool_calls", "length"), choice
    fields["response_format"] = response_format(COLOURS, strict=True)
    error = api.error(CHAT, api.chat_body(ASK, fields), 400)
    assert "uniqueItems" in error["message"]
    assert error["param"] == "response_format.json_schema.schema"
