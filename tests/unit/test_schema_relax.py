"""Relaxing a non-strict schema, and checking outputs against the full one afterwards."""

from __future__ import annotations

import json
import time

import pytest

from pampero.constraints.postcheck import PostCheck
from pampero.constraints.regex_length import anchored_length
from pampero.constraints.schema_relax import relax
from pampero.constraints.validation import Limits


def test_step_one_drops_value_checks_and_reads_oneof_as_anyof() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "n": {"type": "integer", "not": {"const": 3}, "multipleOf": 2},
            "format": {"type": "string", "format": "email"},
            "v": {"oneOf": [{"type": "integer"}, {"type": "number"}]},
        },
    }
    relaxed = relax(schema, 1)
    assert relaxed.dropped == ("multipleOf", "not", "oneOf", "uniqueItems")
    props = relaxed.schema["properties"]
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["n"] == {"type": "integer"}
    assert props["format"] == {"type": "string", "format": "email"}  # kept until step two
    assert props["v"] == {"anyOf": [{"type": "integer"}, {"type": "number"}]}
    assert schema["properties"]["tags"]["uniqueItems"] is True  # the original is untouched


def test_step_two_drops_patterns_and_formats_and_step_three_keeps_the_type() -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^(?=x)x$", "format": "uuid"}},
        "patternProperties": {"^x-": {"type": "string"}},
    }
    assert relax(schema, 1).dropped == ()
    two = relax(schema, 2)
    assert two.dropped == ("format", "pattern", "patternProperties")
    code = {"type": "string", "minLength": 1, "maxLength": 1}  # the lengths ^(?=x)x$ allows
    assert two.schema == {"type": "object", "properties": {"code": code}}
    assert relax(schema, 3).schema == {"type": "object"}
    assert relax({"anyOf": [{"type": "string"}]}, 3).schema == {}


def test_definitions_are_relaxed_too() -> None:
    schema = {"$defs": {"s": {"type": "array", "contains": {"const": 1}}}, "$ref": "#/$defs/s"}
    assert relax(schema, 1).schema["$defs"]["s"] == {"type": "array"}


def check(schema: object, dropped: tuple[str, ...] = ()) -> PostCheck:
    return PostCheck.of(json.dumps(schema), dropped)


def test_the_check_names_where_the_output_fails() -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "uniqueItems": True}},
    }
    assert check(schema).problem('{"tags": ["a", "b"]}') is None
    problem = check(schema).problem('{"tags": ["a", "a"]}')
    assert problem is not None and problem.startswith("at $.tags:")
    assert "not JSON" in str(check(schema).problem('{"tags": ['))


def test_patterns_are_ecmascript_like_and_time_bounded() -> None:
    schema = {"type": "string", "pattern": "^(a|a)*$"}
    started = time.monotonic()
    problem = check(schema).problem(json.dumps("a" * 40 + "b"))
    assert problem is not None and "does not match" in problem
    assert time.monotonic() - started < 5  # backtracking is cut, not waited out
    assert check({"type": "string", "pattern": "^(?=.*[0-9])[a-z0-9]+$"}).problem('"ab1"') is None


def test_pattern_properties_and_additional_properties_are_checked() -> None:
    schema = {
        "type": "object",
        "patternProperties": {"^x-": {"type": "integer"}},
        "additionalProperties": False,
    }
    assert check(schema).problem('{"x-a": 1}') is None
    assert "unexpected properties 'b'" in str(check(schema).problem('{"x-a": 1, "b": 2}'))
    assert "at $.x-a" in str(check(schema).problem('{"x-a": "no"}'))


def test_remote_refs_are_never_fetched() -> None:
    schema = {"$ref": "https://example.com/schema.json"}
    assert "could not be checked" in str(check(schema).problem("1"))


def test_formats_the_validator_knows_are_checked() -> None:
    schema = {"type": "string", "format": "date"}
    assert check(schema).problem('"2026-12-04"') is None
    assert check(schema).problem('"yesterday"') is not None


@pytest.mark.parametrize(
    ("pattern", "length"),
    [
        (r"^(?=.*[0-9])[a-z0-9]{4,8}$", (4, 8)),  # a lookahead has no width
        (r"^[A-Z]{2}$|^\d{3}-\d{4}$", (2, 8)),  # every branch anchored
        (r"\A[0-9a-f]{8}\Z", (8, 8)),
        (r"^(?=.{3,64}$)[a-z]+(-[a-z]+)*", (3, 64)),  # a lookahead that reaches the end
        (r"^a+$", (1, None)),
        (r"[\w\/\.:-]+", None),  # searched anywhere: no bound on the string
        (r"^abc", None),
        (r"^ab$|c", None),
        (r"(?m)^ab$", None),  # lines, not the string
        (r"^\p{L}{2}$", None),  # ECMAScript only: Python cannot read it, so no bound
    ],
)
def test_anchored_patterns_bound_the_string_length(
    pattern: str, length: tuple[int, int | None] | None
) -> None:
    assert anchored_length(pattern) == length


def test_a_dropped_pattern_leaves_its_length_bound() -> None:
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^(?=.*[0-9])[a-z0-9]{4,8}$"},
            "tight": {"type": "string", "pattern": "^[a-z]{2,40}$", "maxLength": 10},
            "path": {"type": "string", "pattern": "^[\\w/.:-]+$", "maxLength": 200},
            "free": {"type": "string", "pattern": "[a-z]"},
            "huge": {"type": "string", "pattern": "^a{0,60000}b{0,60000}$"},
        },
    }
    props = relax(schema, 2).schema["properties"]
    assert props["code"] == {"type": "string", "minLength": 4, "maxLength": 8}
    assert props["tight"] == {"type": "string", "minLength": 2, "maxLength": 10}
    assert props["path"] == {"type": "string", "minLength": 1, "maxLength": 200}
    assert props["free"] == {"type": "string"}
    # A bound past the server's limits is no bound it could compile: left out.
    assert props["huge"] == {"type": "string"}
    assert relax(schema, 2, Limits(max_repetition=10)).schema["properties"]["code"] == {
        "type": "string",
        "minLength": 4,
        "maxLength": 8,
    }


def test_counts_past_the_limits_are_dropped_first_and_alone() -> None:
    schema = {
        "type": "array",
        "items": {"type": "string", "maxLength": 131072, "minLength": 1},
        "maxItems": 50,
        "uniqueItems": True,
    }
    relaxed = relax(schema, 0)
    assert relaxed.dropped == ("maxLength",)
    assert relaxed.schema == {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "maxItems": 50,
        "uniqueItems": True,  # step 0 keeps what a backend may still enforce
    }
    assert relax(schema, 1).dropped == ("maxLength", "uniqueItems")
    assert relax(schema, 0, Limits(max_repetition=10)).dropped == ("maxItems", "maxLength")
    assert relax({"oneOf": [{"type": "integer"}]}, 0).dropped == ()


def test_definitions_under_any_key_are_relaxed_through_their_refs() -> None:
    schema = {
        "type": "object",
        "bolts": {
            "type": "object",
            "patternProperties": {"^[a-z]+$": {"oneOf": [{"$ref": "#/std"}, {"$ref": "#/name"}]}},
        },
        "std": {"type": "string", "not": {"const": ""}},
        "name": {"type": "array", "uniqueItems": True},
        "properties": {"bolts": {"$ref": "#/bolts"}},
        "const_like": {"enum": [{"$ref": "#/unrelated"}]},
    }
    original = json.dumps(schema)
    relaxed = relax(schema, 1)
    assert relaxed.dropped == ("not", "oneOf", "uniqueItems")
    out = relaxed.schema
    assert out["bolts"]["patternProperties"]["^[a-z]+$"] == {
        "anyOf": [{"$ref": "#/std"}, {"$ref": "#/name"}]
    }
    assert out["std"] == {"type": "string"}
    assert out["name"] == {"type": "array"}
    assert json.dumps(schema) == original  # the client's schema is left as it was


def test_step_three_follows_a_top_level_ref_to_its_type() -> None:
    schema = {"$ref": "#/definitions/root", "definitions": {"root": {"type": "object"}}}
    assert relax(schema, 3).schema == {"type": "object"}
    assert relax({"$ref": "#/nowhere"}, 3).schema == {}


def test_a_milder_step_two_keeps_the_patterns_a_backend_can_take() -> None:
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^(?=.*[0-9])[a-z0-9]{4,8}$"},
            "slug": {"type": "string", "pattern": "^[a-z-]+$", "format": "hostname"},
        },
        "patternProperties": {"^x-": {"type": "string"}, "^(?!y)z": {"type": "integer"}},
    }
    relaxed = relax(schema, 2, keep_pattern=lambda pattern: "(?" not in pattern)
    assert relaxed.dropped == ("pattern", "patternProperties")
    props = relaxed.schema["properties"]
    assert props["code"] == {"type": "string", "minLength": 4, "maxLength": 8}
    assert props["slug"] == schema["properties"]["slug"]  # its pattern and format kept
    assert relaxed.schema["patternProperties"] == {"^x-": {"type": "string"}}
    assert relax(schema, 2, keep_pattern=lambda pattern: True).dropped == ()
