"""Reading a regex's features beyond the regular core with Python's own parser."""

from __future__ import annotations

import json

import pytest

from pampero.constraints.base import ConstraintSpec
from pampero.constraints.regex_features import (
    ATOMIC,
    BACKREFERENCE,
    CONDITIONAL,
    EDGE_ANCHOR,
    FLAG_IGNORECASE,
    INNER_ANCHOR,
    LOOKAROUND,
    WORD_BOUNDARY,
    regex_features,
    spec_regex_features,
)


@pytest.mark.parametrize(
    ("pattern", "features"),
    [
        ("abc", set()),
        ("(a|a)*((a{1,20}){1,20}){1,20}", set()),  # costly, but regular
        ("[(?=]x", set()),  # look-alike characters in a class are literals
        (r"\(\?=x\)", set()),
        ("(?=q)q", {LOOKAROUND}),
        ("a(?!b)", {LOOKAROUND}),
        ("(?<=a)b", {LOOKAROUND}),
        ("(?<!a)b", {LOOKAROUND}),
        (r"(a)\1", {BACKREFERENCE}),
        (r"(?P<x>a)(?P=x)", {BACKREFERENCE}),
        ("(a)?(?(1)b|c)", {CONDITIONAL}),
        (r"\bword\B", {WORD_BOUNDARY}),
        ("(?>a)", {ATOMIC}),
        ("a*+", {ATOMIC}),
        ("(?i)ab", {FLAG_IGNORECASE}),
        ("a(?i:b)", {FLAG_IGNORECASE}),
        ("^ab$", {EDGE_ANCHOR}),
        (r"\Aab\Z", {EDGE_ANCHOR}),
        ("^a$|^b$", {EDGE_ANCHOR}),
        ("(^a|^b)c$", {EDGE_ANCHOR}),
        ("a^b", {INNER_ANCHOR}),
        ("a$b", {INNER_ANCHOR}),
        ("(^a)+", {INNER_ANCHOR}),
        ("(?=q)(a)\\1$", {LOOKAROUND, BACKREFERENCE, EDGE_ANCHOR}),
    ],
)
def test_features(pattern: str, features: set[str]) -> None:
    assert regex_features(pattern) == features


def test_an_unparsable_pattern_has_no_features() -> None:
    assert regex_features("(ab") == frozenset()


def test_a_schema_collects_every_pattern_but_its_edge_anchors() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "pattern": "^[a-z]+$"},
            "b": {"type": "array", "items": {"type": "string", "pattern": "(?=x)x"}},
            "c": {"const": {"pattern": r"(a)\1"}},  # a value, not a keyword
        },
        "patternProperties": {r"^(\w)\1$": {"type": "integer"}},
    }
    spec = ConstraintSpec(kind="json_schema", value=json.dumps(schema), param="guided_json")
    assert spec_regex_features(spec) == {LOOKAROUND, BACKREFERENCE}


def test_other_kinds_have_none() -> None:
    choice = ConstraintSpec(kind="choice", value=("(?=a)",), param="guided_choice")
    assert spec_regex_features(choice) == frozenset()
