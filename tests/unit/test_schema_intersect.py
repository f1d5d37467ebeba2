"""Intersections computed on the document: the resolved schema accepts exactly the documents
the original does (checked with jsonschema over generated documents), no ``$ref`` in it meets
another constraint, guidance compiles what it refused, and what cannot be resolved exactly is
left alone (None)."""

from __future__ import annotations

import itertools
import json
import random
import re
from typing import Any

import jsonschema
import pytest

from pampero.constraints.schema_intersect import _without_names, resolve_intersections
from pampero.constraints.schema_rewrite import rewrite

NODE_WITH_ALL_OF = {  # a tree whose children must also carry "v": guidance refused it
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "v": {"type": "integer"},
                "kids": {
                    "type": "array",
                    "items": {"allOf": [{"$ref": "#/$defs/node"}, {"required": ["v"]}]},
                    "maxItems": 2,
                },
            },
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}
REFERENCE = {  # the Washington Post shape: a reference narrowed by allOf, recursively
    "definitions": {
        "reference": {
            "type": "object",
            "properties": {
                "type": {"enum": ["reference"]},
                "referent": {
                    "type": "object",
                    "properties": {"type": {"type": "string"}, "id": {"type": "string"}},
                    "required": ["id"],
                },
                "content": {"$ref": "#/definitions/content"},
            },
            "required": ["type", "referent"],
            "additionalProperties": False,
        },
        "content": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "section": {
                    "oneOf": [
                        {"$ref": "#/definitions/section"},
                        {
                            "allOf": [
                                {"$ref": "#/definitions/reference"},
                                {"properties": {"referent": {"properties": {"type": {
                                    "enum": ["section"]}}}}},
                            ]
                        },
                    ]
                },
            },
            "required": ["type"],
        },
        "section": {
            "type": "object",
            "properties": {"type": {"enum": ["section"]}, "name": {"type": "string"}},
            "required": ["type"],
            "additionalProperties": False,
        },
    },
    "$ref": "#/definitions/content",
}  # fmt: skip
PATTERNED = {  # every property also meets a pattern matching every name
    "definitions": {
        "item": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "next": {"type": "object", "required": ["name"]},
                "redirect": {"type": "array", "items": {"$ref": "#/definitions/redirect"}},
            },
            "patternProperties": {
                ".*": {"anyOf": [{"$ref": "#/definitions/item"}, {"type": "string"},
                                 {"type": "array", "items": {"$ref": "#/definitions/item"}}]}
            },
        },
        "redirect": {
            "type": "object",
            "properties": {"url": {"type": "string"}, "name": {"type": "string"}},
            "required": ["url"],
            "additionalProperties": False,
        },
    },
    "$ref": "#/definitions/item",
}  # fmt: skip
DICTIONARY = {  # a character-class pattern beside a listed name, both holding $refs
    "$defs": {
        "dict": {
            "type": "object",
            "properties": {"basic": {"$ref": "#/$defs/text"}},
            "patternProperties": {"^[a-z_]*$": {"anyOf": [{"$ref": "#/$defs/text"},
                                                         {"$ref": "#/$defs/dict"}]}},
            "additionalProperties": False,
        },
        "text": {"type": "string", "maxLength": 3},
    },
    "$ref": "#/$defs/dict",
}  # fmt: skip
TYPED_ANY_OF = {
    "$defs": {
        "a": {"type": "object", "properties": {"x": {"$ref": "#/$defs/b"}}},
        "b": {
            "type": "array",
            "items": {"type": "object", "anyOf": [{"$ref": "#/$defs/a"}, {"required": ["y"]}]},
        },
    },
    "$ref": "#/$defs/a",
}
EMPTY_PAIR = {  # a redirect that is also a content item cannot exist: that branch is dropped
    "$defs": {
        "redirect": {
            "type": "object",
            "properties": {"url": {"type": "string"}},
            "required": ["url"],
            "additionalProperties": False,
        },
        "content": {
            "type": "object",
            "properties": {"body": {"type": "string"}, "more": {"$ref": "#/$defs/content"}},
            "required": ["body"],
        },
    },
    "type": "object",
    "properties": {
        "links": {
            "type": "array",
            "items": {
                "allOf": [
                    {"$ref": "#/$defs/redirect"},
                    {"anyOf": [{"$ref": "#/$defs/content"}, {"required": ["url"]}]},
                ]
            },
        }
    },
}
BOUNDS = {
    "$defs": {"n": {"type": "number", "minimum": 0, "maximum": 10}, "l": {"$ref": "#/$defs/ls"},
              "ls": {"type": "array", "items": {"$ref": "#/$defs/l"}, "maxItems": 3}},
    "type": "object",
    "properties": {
        "n": {"allOf": [{"$ref": "#/$defs/n"}, {"type": "integer", "exclusiveMaximum": 5}]},
        "e": {"allOf": [{"enum": [1, 2, "a", None]}, {"enum": [2, "a", 3]}, {"$ref": "#/$defs/n"}]},
        "l": {"allOf": [{"$ref": "#/$defs/l"}, {"minItems": 1, "maxItems": 2}]},
    },
}  # fmt: skip

RESOLVABLE = {
    "node with allOf": NODE_WITH_ALL_OF,
    "reference": REFERENCE,
    "patterned": PATTERNED,
    "dictionary": DICTIONARY,
    "typed anyOf": TYPED_ANY_OF,
    "empty pair": EMPTY_PAIR,
    "bounds": BOUNDS,
}


def documents(seed: int, count: int) -> list[Any]:
    """Random JSON values built from the names and values the schemas above use."""
    rng = random.Random(seed)
    names = [
        "v",
        "kids",
        "type",
        "referent",
        "id",
        "content",
        "section",
        "name",
        "next",
        "redirect",
        "url",
        "basic",
        "x",
        "y",
        "links",
        "body",
        "more",
        "n",
        "e",
        "l",
        "z_z",
    ]
    leaves = [None, True, 0, 1, 2, 3, 4.5, 7, 11, -1, "", "a", "abcd", "section", "reference",
              "x"]  # fmt: skip

    def value(depth: int) -> Any:
        roll = rng.random()
        if depth > 3 or roll < 0.35:
            return rng.choice(leaves)
        if roll < 0.55:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        keys = rng.sample(names, rng.randint(0, 4))
        return {k: value(depth + 1) for k in keys}

    return [value(0) for _ in range(count)]


def valid_examples() -> list[Any]:
    return [
        {"v": 1, "kids": [{"v": 2, "kids": []}, {"v": 3}]},
        {"kids": [{"v": 2, "kids": [{"v": 1}]}]},
        {"type": "story", "section": {"type": "section", "name": "a"}},
        {"type": "s", "section": {"type": "reference", "referent": {"id": "1", "type": "section"}}},
        {"name": "a", "next": {"name": "b"}, "other": "x", "more": [{"name": "c"}]},
        {"redirect": [{"url": "u", "name": "n"}], "name": "x"},
        {"basic": "abc", "sub": {"basic": "a", "x": "b"}},
        {"x": [{"y": 1}, {"x": []}]},
        {"links": [{"url": "u"}]},
        {"n": 4, "e": 2, "l": [[]]},
    ]


def language_check(original: dict[str, Any], resolved: dict[str, Any], seed: int) -> None:
    before = jsonschema.Draft202012Validator(original)
    after = jsonschema.Draft202012Validator(resolved)
    for document in [*valid_examples(), *documents(seed, 3000)]:
        assert before.is_valid(document) == after.is_valid(document), document


def lonely_refs(node: Any) -> bool:
    """No ``$ref`` beside another constraint, inside ``allOf``, or where a pattern of its own
    object meets a listed property."""
    if isinstance(node, list):
        return all(lonely_refs(item) for item in node)
    if not isinstance(node, dict):
        return True
    keys = set(node) - {"description", "title", "$schema", "$defs", "definitions"}
    if "$ref" in node and keys != {"$ref"}:
        return False
    if any("$ref" in json.dumps(item) for item in node.get("allOf", [])):
        return False
    patterns, properties = node.get("patternProperties", {}), node.get("properties", {})
    for pattern, name in itertools.product(patterns, properties):
        if re.search(pattern, name) and "$ref" in json.dumps([patterns, properties]):
            return False
    return all(lonely_refs(value) for value in node.values())


@pytest.mark.parametrize("name", list(RESOLVABLE))
def test_resolved_schema_means_the_same(name: str) -> None:
    original = RESOLVABLE[name]
    resolved = resolve_intersections(original)
    assert resolved is not None
    assert lonely_refs(resolved), json.dumps(resolved)
    language_check(original, resolved, seed=len(name))


def test_examples_are_meaningful() -> None:
    """The hand-written documents are valid for the schema they were written for (so the
    language checks above compare more than rejections)."""
    accepted = {
        name: sum(jsonschema.Draft202012Validator(s).is_valid(d) for d in valid_examples())
        for name, s in RESOLVABLE.items()
    }
    assert all(count >= 1 for count in accepted.values()), accepted


def test_an_empty_intersection_becomes_false() -> None:
    resolved = resolve_intersections(EMPTY_PAIR)
    assert resolved is not None
    links = resolved["properties"]["links"]["items"]
    body = resolved["$defs"][links["$ref"].rsplit("/", 1)[1]]
    assert "content" not in json.dumps(body)  # the redirect-and-content branch is gone


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"a": {"allOf": [{"$ref": "#/properties/b"}, {"type": "string"}]},
                        "b": {"type": "string"}}},
        {"$defs": {"a": {"$id": "other", "type": "string"}},
         "allOf": [{"$ref": "#/$defs/a"}, {"maxLength": 2}]},
        {"$defs": {"a": {"patternProperties": {"^x": {"$ref": "#/$defs/a"}}}},
         "allOf": [{"$ref": "#/$defs/a"}, {"patternProperties": {"^y": {"type": "string"}}}]},
        {"$defs": {"a": {"type": "object"}}, "properties": {"ab": {"$ref": "#/$defs/a"}},
         "patternProperties": {"^a(?=b)": {"$ref": "#/$defs/a"}}},
        {"$defs": {"t": {"items": [{"$ref": "#/$defs/t"}]}},
         "allOf": [{"$ref": "#/$defs/t"}, {"items": [{"type": "array"}]}]},
        True,
    ],
    ids=["ref into a property", "nested $id", "patterns on both sides", "lookahead pattern",
         "two tuples", "a boolean"],
)  # fmt: skip
def test_what_is_not_resolved_exactly_is_left_alone(schema: Any) -> None:
    assert resolve_intersections(schema) is None


@pytest.mark.parametrize("pattern", ["^[a-z_]*$", "^([a-zA-Z0-9_])*$", "^(?:[a-c])+$"])
@pytest.mark.parametrize("names", [["basic"], ["ba", "basic", "b"], ["a", "ab", "c"], [""]])
def test_a_pattern_without_names_matches_the_rest_exactly(pattern: str, names: list[str]) -> None:
    names = [n for n in names if re.search(pattern, n)]
    narrowed = _without_names(pattern, names)
    assert narrowed is not None
    alphabet = "abcsi_Z0-é"
    for length in range(7):
        for text in map("".join, itertools.product(alphabet, repeat=length)):
            expected = bool(re.search(pattern, text)) and text not in names
            assert bool(narrowed and re.search(narrowed, text)) == expected, (text, narrowed)
        if length >= 3:
            alphabet = "abcsi_"  # longer words: only the letters that make up the names


def test_guidance_compiles_what_it_refused() -> None:
    llguidance = pytest.importorskip("llguidance")

    def error(schema: Any) -> str | None:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema))
        failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
        return messages[0] if failed else None

    for name, schema in RESOLVABLE.items():
        resolved = resolve_intersections(rewrite(schema, clauses=True))  # as the backend does
        assert error(resolved) is None, (name, error(resolved))
    assert "circular references with sibling keys" in (error(NODE_WITH_ALL_OF) or "")
    assert "circular references with sibling keys" in (error(PATTERNED) or "")
