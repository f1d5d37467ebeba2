"""Closing objects (guidance's reading of an unsaid ``additionalProperties``, as xgrammar's):
only narrows what is generated, never where another keyword could add a property, and never
makes an object impossible."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from pampero.constraints.schema_close import closed

SAMPLES: list[Any] = [
    {}, {"a": 1}, {"a": 1, "b": 2}, {"a": 1, "z": 0}, {"b": 2}, {"a": {"b": 1}},
    {"a": {"b": 1, "c": 2}}, {"a": 1, "w": 3}, {"v": 1, "w": 3}, {"v": 1}, {"x": 1, "y": 2},
    {"a": 1, "w": 2, "l": 3}, [1], [{"a": 1, "q": 1}], "s", None,
]  # fmt: skip

CLOSED = {
    "top and nested": (
        {"type": "object", "properties": {"a": {"properties": {"b": {}}}}},
        ["#", "#/properties/a"],
    ),
    "anyOf branches alone": (
        {"anyOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]},
        ["#/anyOf/0", "#/anyOf/1"],
    ),
    "definition used alone": (
        {"$defs": {"n": {"properties": {"v": {}}}}, "items": {"$ref": "#/$defs/n"}},
        ["#/$defs/n"],
    ),
    "array items": ({"items": {"properties": {"a": {}}}}, ["#/items"]),
    "required but unlisted, listed as anything": (
        {"properties": {"a": {}}, "required": ["a", "b"]},
        ["#"],
    ),
    "branches beside a type": (
        {"type": "object", "anyOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]},
        ["#/anyOf/0", "#/anyOf/1"],
    ),
    "a name forbidden in a clause": (
        {"properties": {"a": {}}, "allOf": [{"properties": {"w": False}}]},
        ["#"],
    ),
    "branches that only require listed names": (
        {"properties": {"a": {}, "b": {}}, "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        ["#"],
    ),
}
UNTOUCHED = {
    "allOf clauses": {"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]},
    "beside anyOf": {"properties": {"a": {}}, "anyOf": [{"properties": {"b": {}}}]},
    "beside a branch requiring another": {"properties": {"a": {}}, "anyOf": [{"required": ["z"]}]},
    "beside a branch with a $ref": {
        "$defs": {"n": {"properties": {"v": {}}}},
        "properties": {"a": {}},
        "anyOf": [{"$ref": "#/$defs/n"}],
    },
    "branches beside properties": {"properties": {"w": {}}, "anyOf": [{"properties": {"v": {}}}]},
    "definition in allOf": {
        "$defs": {"n": {"properties": {"v": {}}}},
        "allOf": [{"$ref": "#/$defs/n"}, {"properties": {"w": {}}}],
    },
    "definition beside keywords": {
        "$defs": {"n": {"properties": {"v": {}}}},
        "$ref": "#/$defs/n",
        "properties": {"w": {}},
    },
    "a branch requires an unlisted name": {"properties": {"a": {}}, "anyOf": [{"required": ["z"]}]},
    "too few to reach minProperties": {"properties": {"a": {}}, "minProperties": 2},
    "explicit additionalProperties": {"properties": {"a": {}}, "additionalProperties": True},
    "patterns": {"properties": {"a": {}}, "patternProperties": {"^z": {}}},
    "property a pattern meets": {
        "patternProperties": {"^a": {"properties": {"c": {}}}},
        "properties": {"a": {"properties": {"b": {}}}},
    },
    "dependencies": {"properties": {"a": {}}, "dependencies": {"a": {"properties": {"b": {}}}}},
    "oneOf branches": {"oneOf": [
        {"required": ["a", "w"], "properties": {"a": {}}},
        {"required": ["a", "l"], "properties": {"a": {}, "l": {}}},
    ]},
    "object inside a oneOf branch": {"oneOf": [
        {"properties": {"a": {"properties": {"b": {}}}}},
        {"properties": {"a": {"required": ["b", "c"]}}},
    ]},
    "ref into a property": {"properties": {"a": {"properties": {"b": {}}}, "c": {
        "$ref": "#/properties/a"}}},
}  # fmt: skip


def at(schema: Any, pointer: str) -> Any:
    for part in pointer.split("/")[1:]:
        schema = schema[int(part)] if isinstance(schema, list) else schema[part]
    return schema


def narrower(original: Any, result: Any) -> None:
    before = jsonschema.Draft202012Validator(original)
    after = jsonschema.Draft202012Validator(result)
    for document in SAMPLES:
        if after.is_valid(document):
            assert before.is_valid(document), document


@pytest.mark.parametrize("name", list(CLOSED))
def test_objects_applied_alone_are_closed(name: str) -> None:
    schema, pointers = CLOSED[name]
    result = closed(schema)
    for pointer in pointers:
        assert at(result, pointer)["additionalProperties"] is False, pointer
    narrower(schema, result)
    kept = jsonschema.Draft202012Validator(result)
    assert any(kept.is_valid(d) for d in SAMPLES if isinstance(d, dict) and d)  # not impossible
    assert "additionalProperties" not in json.dumps(schema)  # the original is left as it was


@pytest.mark.parametrize("name", list(UNTOUCHED))
def test_objects_another_keyword_could_extend_stay_open(name: str) -> None:
    schema = UNTOUCHED[name]
    result = closed(schema)
    assert json.dumps(result).count("additionalProperties") == json.dumps(schema).count(
        "additionalProperties"
    )
    narrower(schema, result)
