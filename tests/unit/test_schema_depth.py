"""Bounded recursion: recursive definitions nest at most ``depth`` levels, only ever narrowing
(every document the bounded schema accepts, the original accepts), and schemas where that
cannot be shown stay as they are."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest

from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.compiler import ConstraintCompiler, compile_in_process
from pampero.constraints.registry import BackendRegistry
from pampero.constraints.schema_depth import bounded_recursion, bounded_spec
from tests.unit.test_constraints_contract import (  # noqa: F401 - fixtures
    Walker,
    lookup,
    vocabulary,
    walker,
)

TREE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "kids": {"type": "array", "items": {"$ref": "#"}},
    },
    "required": ["name"],
}
# Two definitions that refer to each other, draft-04 style (no boolean schemas there).
MUTUAL = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "definitions": {
        "section": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "body": {"$ref": "#/definitions/body"}},
            "required": ["title"],
        },
        "body": {"type": "array", "items": {"$ref": "#/definitions/section"}},
    },
    "$ref": "#/definitions/section",
}
# GOV.UK content schemas: links map link types to arrays of items that have links again.
LINKS = {
    "definitions": {
        "links": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "links": {
                        "type": "object",
                        "patternProperties": {"^[a-z_]+$": {"$ref": "#/definitions/links"}},
                    },
                },
                "required": ["title"],
            },
        }
    },
    "type": "object",
    "properties": {"links": {"$ref": "#/definitions/links"}},
}
# A nested list: an item is a number or a list of items (the recursion is one branch).
NESTED = {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#"}}]}

UNTOUCHED = {
    "no recursion": {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}},
                     "$defs": {"a": {"type": "integer"}}},
    "a recursion that cannot stop": {
        "type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]},
    "under not": {"type": "object", "properties": {"a": {"not": {"$ref": "#"}}}},
    "under oneOf": {"oneOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#"}}]},
    "a reference into a path": {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {"$ref": "#/properties/a"}}}},
    },
    "dynamic references": {"$dynamicAnchor": "n", "type": "array", "items": {"$dynamicRef": "#n"}},
}  # fmt: skip


def tree(depth: int) -> dict[str, Any]:
    return {"name": "n"} if depth == 1 else {"name": "n", "kids": [tree(depth - 1), {"name": "m"}]}


def section(depth: int) -> dict[str, Any]:
    return {"title": "t"} if depth == 1 else {"title": "t", "body": [section(depth - 1)]}


def links(depth: int) -> dict[str, Any]:
    item: dict[str, Any] = {"title": "t"}
    if depth > 1:
        item["links"] = {"parent": links(depth - 1)["links"]}
    return {"links": [item]}


def nested(depth: int) -> Any:
    return 1 if depth == 1 else [2, nested(depth - 1)]


def valid(schema: Any, document: Any) -> bool:
    return jsonschema.validators.validator_for(schema)(schema).is_valid(document)


@pytest.mark.parametrize(
    ("schema", "make", "levels"),
    [(TREE, tree, 3), (MUTUAL, section, 3), (LINKS, links, 3), (NESTED, nested, 3)],
    ids=["tree", "mutual", "links", "nested"],
)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_documents_nest_at_most_depth_levels_and_all_were_valid_before(
    schema: dict[str, Any], make: Any, levels: int, depth: int
) -> None:
    bounded = bounded_recursion(schema, depth)
    jsonschema.validators.validator_for(schema).check_schema(bounded)  # its own draft
    for n in range(1, depth + levels):
        document = make(n)
        assert valid(schema, document)
        assert valid(bounded, document) == (n <= depth), (n, json.dumps(bounded))


def test_the_cut_leaves_out_an_open_object_whose_patterns_recur() -> None:
    bounded = bounded_recursion(LINKS, 1)
    # a near-miss key would otherwise take any value at all, and nest on in there
    assert not valid(bounded, {"links": [{"title": "t", "links": {"Parent!": [[[{}]]]}}]})
    assert valid(bounded, {"links": [{"title": "t"}]})


@pytest.mark.parametrize("name", list(UNTOUCHED))
def test_what_cannot_be_bounded_safely_stays_as_it_is(name: str) -> None:
    schema = UNTOUCHED[name]
    assert bounded_recursion(schema, 2) is schema


def test_specs_other_than_recursive_schemas_are_returned_as_they_are() -> None:
    plain = ConstraintSpec(kind="json_schema", value=json.dumps({"type": "integer"}), param="p")
    regex = ConstraintSpec(kind="regex", value="a+", param="p")
    assert bounded_spec(plain, 3) is plain
    assert bounded_spec(regex, 3) is regex
    spec = ConstraintSpec(kind="json_schema", value=json.dumps(TREE), param="p")
    assert bounded_spec(spec, 0) is spec
    assert json.loads(bounded_spec(spec, 2).value) == bounded_recursion(TREE, 2)


@pytest.mark.parametrize("backend", ["guidance", "xgrammar"])
def test_a_matcher_closes_the_tree_at_the_bound(
    backend: str,
    walker: Walker,  # noqa: F811 - fixture
) -> None:
    registry = BackendRegistry()
    if backend not in registry.available():
        pytest.skip(f"{backend} is not installed")
    spec = bounded_spec(ConstraintSpec(kind="json_schema", value=json.dumps(TREE), param="p"), 2)
    compiled = compile_in_process(registry.backend(backend), spec, walker.vocabulary)
    # in the schema's order of properties, which guidance keeps
    deep = json.dumps(tree(4), separators=(",", ":"), sort_keys=True)
    text = walker.walk(compiled, deep)
    document = json.loads(text)
    assert text != deep
    assert valid(TREE, document)
    assert all(not kid.get("kids") for kid in document.get("kids", []))
    shallow = json.dumps(tree(2), separators=(",", ":"), sort_keys=True)
    assert walker.walk(compiled, shallow) == shallow


@pytest.mark.parametrize("strict", [True, False])
def test_the_compiler_bounds_recursion_as_configured(
    strict: bool,
    vocabulary: ConstraintVocabulary,  # noqa: F811 - fixture
) -> None:
    async def compiled(depth: int) -> Any:
        async with ConstraintCompiler(vocabulary, max_recursion=depth) as compiler:
            spec = ConstraintSpec("json_schema", json.dumps(TREE), "guided_json", strict=strict)
            return json.loads((await compiler.compile(spec)).spec.value)

    bounded = asyncio.run(compiled(2))
    assert valid(bounded, tree(2)) and not valid(bounded, tree(3))
    assert valid(asyncio.run(compiled(0)), tree(5))
