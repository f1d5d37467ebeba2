"""Exact JSON Schema rewrites: the rewritten schema accepts exactly the documents the original
does (checked with jsonschema over sample documents), and is only rewritten when that holds."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from pampero.constraints.base import ConstraintSpec
from pampero.constraints.schema_rewrite import rewrite, rewrite_spec, without_formats

SAMPLES: list[Any] = [
    None, True, False, 0, 1, 1.0, 2.5, -3, "", "a", "circle", "square", [], [1], {}, {"a": 1},
    {"kind": "circle", "r": 1}, {"kind": "square", "side": 2}, {"kind": "circle", "side": 2},
    {"kind": "oval"}, {"kind": 1}, {"a": "x"}, {"a": "x", "b": "y"}, {"b": "y"},
    {"a": "x", "b": "y", "c": 3}, {"a": "x", "c": 3}, {"c": 3}, {"a": "x", "type": "section"},
    {"a": "x", "type": "other"}, {"type": "other"}, {"name": {"first": "A"}},
    {"name": {"first": "A", "last": "B"}}, {"length": 1, "width": 2}, {"radius": 1},
    {"length": 1, "width": 2, "radius": 3}, {"length": 1}, {"length": 1, "radius": 3},
    {"kind": "circle"}, {"kind": "square"},
]  # fmt: skip


def same_language(original: dict[str, Any], rewritten: dict[str, Any]) -> None:
    # Draft 2020-12 no longer knows draft 7's "dependencies": judge those by draft 7.
    draft7 = '"dependencies"' in json.dumps(original)
    validator = jsonschema.Draft7Validator if draft7 else jsonschema.Draft202012Validator
    before, after = validator(original), validator(rewritten)
    for document in SAMPLES:
        assert before.is_valid(document) == after.is_valid(document), document


DISJOINT = {
    "by type": {"oneOf": [{"type": "string"}, {"type": "null"}, {"type": "array"}]},
    "by const": {"oneOf": [{"const": "circle"}, {"const": "square"}, {"const": 1}]},
    "by enum": {"oneOf": [{"enum": ["a", 1]}, {"enum": ["circle", 2.5]}]},
    "integer and string": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
    "by discriminator": {
        "oneOf": [
            {"type": "object", "properties": {"kind": {"const": "circle"}}, "required": ["kind"]},
            {"type": "object", "properties": {"kind": {"enum": ["square"]}}, "required": ["kind"]},
        ]
    },
    "through $ref": {
        "$defs": {"s": {"type": "string"}, "n": {"$ref": "#/$defs/null"}, "null": {"type": "null"}},
        "oneOf": [{"$ref": "#/$defs/s"}, {"$ref": "#/$defs/n"}],
    },
    "discriminator in an object": {
        "type": "object",
        "oneOf": [
            {"properties": {"kind": {"const": "circle"}}, "required": ["kind"]},
            {"properties": {"kind": {"const": "square"}}, "required": ["kind"]},
        ],
    },
    "nested anyOf": {
        "oneOf": [{"anyOf": [{"type": "string"}, {"type": "boolean"}]}, {"type": "number"}]
    },
}
OVERLAPPING = {
    "integer in number": {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    "unknown branch": {"oneOf": [{"minLength": 2}, {"type": "string"}]},
    "shared value": {"oneOf": [{"enum": ["a", "b"]}, {"enum": ["b", "c"]}]},
    "1 equals 1.0": {"oneOf": [{"const": 1}, {"const": 1.0}]},
    "discriminator without object type": {
        "oneOf": [
            {"properties": {"kind": {"const": "circle"}}, "required": ["kind"]},
            {"properties": {"kind": {"const": "square"}}, "required": ["kind"]},
        ]
    },
    "$ref with siblings": {
        "$defs": {"s": {"type": "string"}},
        "oneOf": [{"$ref": "#/$defs/s", "minLength": 1}, {"type": "null"}],
    },
    "dangling $ref": {"oneOf": [{"$ref": "#/$defs/missing"}, {"type": "null"}]},
    "remote $ref": {"oneOf": [{"$ref": "https://example.com/s.json"}, {"type": "null"}]},
}


@pytest.mark.parametrize("schema", DISJOINT.values(), ids=DISJOINT.keys())
def test_a_disjoint_one_of_becomes_any_of(schema: dict[str, Any]) -> None:
    rewritten = rewrite(schema)
    assert "oneOf" not in rewritten and rewritten["anyOf"] == schema["oneOf"]
    same_language(schema, rewritten)


@pytest.mark.parametrize("schema", OVERLAPPING.values(), ids=OVERLAPPING.keys())
def test_a_one_of_not_proven_disjoint_stays(schema: dict[str, Any]) -> None:
    assert rewrite(schema) == schema


BASE = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
DEPENDENT = {
    "dependentRequired": {**BASE, "dependentRequired": {"a": ["b"]}},
    "draft 7 names": {**BASE, "dependencies": {"a": ["b"], "c": []}},
    "draft 7 schema": {
        **BASE,
        "dependencies": {
            "a": {"properties": {"type": {"enum": ["section"]}}, "required": ["type"]}
        },
    },
    "dependentSchemas": {**BASE, "dependentSchemas": {"a": {"required": ["c"]}, "b": False}},
    "with required": {**BASE, "required": ["a"], "dependentRequired": {"a": ["b"]}},
    "with allOf": {**BASE, "allOf": [{"required": ["c"]}], "dependentRequired": {"a": ["b"]}},
    "nested": {
        "type": "object",
        "properties": {
            "name": {
                "type": "object",
                "properties": {"first": {}, "last": {}},
                "dependentRequired": {"first": ["last"]},
            }
        },
    },
}


@pytest.mark.parametrize("schema", DEPENDENT.values(), ids=DEPENDENT.keys())
def test_dependencies_become_an_all_of_of_any_ofs(schema: dict[str, Any]) -> None:
    assert rewrite(schema) == schema  # only when asked
    rewritten = rewrite(schema, clauses=True)
    text = json.dumps(rewritten)
    assert "dependentRequired" not in text and "dependentSchemas" not in text
    assert '"dependencies"' not in text
    same_language(schema, rewritten)


def test_keywords_spelled_as_property_names_are_names() -> None:
    schema = {
        "type": "object",
        "properties": {
            "oneOf": {"type": "string"},
            "dependencies": {"type": "object", "properties": {"x": {"type": "integer"}}},
        },
        "enum": [{"oneOf": [{"type": "string"}, {"type": "null"}]}],
    }
    assert rewrite(schema, clauses=True) == schema


def test_a_malformed_dependency_is_left_for_validation() -> None:
    schema = {**BASE, "dependentRequired": {"a": "b"}}
    assert rewrite(schema, clauses=True) == schema


def test_specs_are_rewritten_only_when_something_changes() -> None:
    one_of = ConstraintSpec(
        kind="json_schema",
        value=json.dumps({"oneOf": [{"type": "string"}, {"type": "null"}]}),
        param="guided_json",
    )
    rewritten = rewrite_spec(one_of)
    assert json.loads(rewritten.value) == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert rewritten.param == "guided_json"
    plain = ConstraintSpec(kind="json_schema", value='{"type": "string"}', param="p")
    assert rewrite_spec(plain) is plain
    broken = ConstraintSpec(kind="json_schema", value="{not json", param="p")
    assert rewrite_spec(broken) is broken
    regex = ConstraintSpec(kind="regex", value="a+", param="p")
    assert rewrite_spec(regex) is regex


def test_deep_nesting_neither_recurses_forever_nor_raises() -> None:
    deep: dict[str, Any] = {"oneOf": [{"type": "string"}, {"type": "null"}]}
    for _ in range(400):
        deep = {"type": "array", "items": deep}
    text = json.dumps(deep)
    spec = ConstraintSpec(kind="json_schema", value=text, param="p")
    assert rewrite_spec(spec).value == text  # past MAX_DEPTH nothing is rewritten


def test_without_formats_drops_only_the_named_formats() -> None:
    schema = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "format": "jsonpath"},
            "day": {"type": "string", "format": "date"},
            "format": {"type": "string", "format": "jsonpath"},
        },
    }
    rewritten = json.loads(without_formats(json.dumps(schema), frozenset({"jsonpath"})))
    assert rewritten["properties"]["path"] == {"type": "string"}
    assert rewritten["properties"]["day"] == {"type": "string", "format": "date"}
    assert rewritten["properties"]["format"] == {"type": "string"}  # a property named format


def test_not_anything_is_false() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"not": {}},
            "b": {"type": "string", "not": True},
            "c": {"not": {"type": "string"}},
        },
    }
    assert rewrite(schema) == schema  # only when asked
    rewritten = rewrite(schema, clauses=True)
    assert rewritten["properties"]["a"] is False and rewritten["properties"]["b"] is False
    assert rewritten["properties"]["c"] == {"not": {"type": "string"}}  # left for the backend
    same_language(schema, rewritten)


GROUPS = {
    "two groups": {"oneOf": [{"required": ["length", "width"]}, {"required": ["radius"]}]},
    "in an object": {
        "type": "object",
        "properties": {"length": {}, "width": {}, "radius": {}},
        "oneOf": [{"required": ["length"]}, {"required": ["radius"]}, {"required": ["width"]}],
    },
}


@pytest.mark.parametrize("schema", GROUPS.values(), ids=GROUPS.keys())
def test_a_one_of_of_required_groups_becomes_exact_any_of_clauses(schema: dict[str, Any]) -> None:
    assert rewrite(schema) == schema  # only when asked
    rewritten = rewrite(schema, clauses=True)
    assert "oneOf" not in json.dumps(rewritten)
    same_language(schema, rewritten)


@pytest.mark.parametrize(
    "branches",
    [
        [{"required": ["a"]}, {"required": ["a", "b"]}],  # one group inside another
        [{"required": ["a"]}, {"required": []}],
        [{"required": ["a"]}, {"required": ["b"], "minProperties": 2}],  # could force b in
        [{"required": ["a"]}, {"required": ["b"], "allOf": [{"required": ["a"]}]}],
        [{"required": ["a"]}, {"required": ["b"], "type": "string"}],
    ],
)
def test_other_one_ofs_of_required_stay(branches: list[Any]) -> None:
    schema = {"oneOf": branches}
    assert rewrite(schema, clauses=True) == schema


NARROWED = {
    # Github_trivial o19070: an answer with both win and lose matched both branches.
    "groups with properties": {
        "type": "object",
        "oneOf": [
            {"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "string"}}},
            {"type": "object", "required": ["a", "c"], "properties": {"c": {"type": "integer"}}},
        ],
    },
    "a branch that says it is an object": {
        "oneOf": [{"required": ["a"]}, {"required": ["b"], "type": "object"}]
    },
    "a closed branch": {
        "oneOf": [
            {"required": ["length", "width"], "properties": {"length": {}, "width": {}}},
            {"required": ["radius"], "additionalProperties": False,
             "properties": {"radius": {"type": "integer"}, "length": {}}},
        ]
    },
}  # fmt: skip
NARROWED_SAMPLES: list[Any] = [
    {"a": "x", "b": 1}, {"a": "x", "c": 1}, {"a": "x", "b": 1, "c": 2}, {"a": 1, "b": 1, "c": 2},
    {"a": "x", "b": 1, "c": "y"}, {"a": 1, "c": 2}, {"length": 1, "width": 2, "radius": 3},
    {"length": 1, "radius": 3}, {"radius": 3}, {"radius": "r"}, {"length": 1, "width": 2},
    {"b": 1}, {"a": 1}, "a", 1, None, [],
]  # fmt: skip


@pytest.mark.parametrize("schema", NARROWED.values(), ids=NARROWED.keys())
def test_required_groups_with_more_to_say_narrow_to_one_branch(schema: dict[str, Any]) -> None:
    """Each branch keeps what it says and lacks a property of every other group: whatever the
    rewritten schema accepts matches exactly one original branch (no oneOf left to get wrong),
    and the documents with one group only are all still accepted."""
    rewritten = rewrite(schema, clauses=True)
    assert "oneOf" not in json.dumps(rewritten)
    before = jsonschema.Draft202012Validator(schema)
    after = jsonschema.Draft202012Validator(rewritten)
    kept = 0
    for document in SAMPLES + NARROWED_SAMPLES:
        if after.is_valid(document):
            assert before.is_valid(document), document
            kept += 1
        elif before.is_valid(document):
            groups = [set(b["required"]) for b in schema["oneOf"]]
            assert isinstance(document, dict) or "type" not in schema["oneOf"][0], document
            if isinstance(document, dict):
                assert sum(g <= set(document) for g in groups) > 1, document
    assert kept > 0


def test_a_type_beside_a_ref_that_already_has_it_is_dropped() -> None:
    defs = {
        "node": {"type": "object", "properties": {"v": {"type": "integer"}}},
        "count": {"type": "integer"},
        "loose": {"properties": {"v": {"type": "integer"}}},
    }
    schema = {
        "$defs": defs,
        "type": "object",
        "properties": {
            "a": {"$ref": "#/$defs/node", "type": "object", "description": "kept"},
            "b": {"$ref": "#/$defs/count", "type": ["number", "null"]},
            "c": {"$ref": "#/$defs/loose", "type": "object"},  # the type says more: kept
            "d": {"$ref": "#/$defs/node", "type": "array"},  # contradicts: kept (nothing valid)
        },
    }
    properties = rewrite(schema)["properties"]
    assert properties["a"] == {"$ref": "#/$defs/node", "description": "kept"}
    assert properties["b"] == {"$ref": "#/$defs/count"}
    assert properties["c"] == schema["properties"]["c"]
    assert properties["d"] == schema["properties"]["d"]
    same_language(schema, rewrite(schema))
