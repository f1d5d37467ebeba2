"""JSON constraints never name a key twice in one object: the tokens that would finish a key
the innermost object already has are masked, whatever their shape, and nothing else is."""

from __future__ import annotations

import json

import pytest

from pampero.constraints.base import ConstraintSpec
from pampero.constraints.compiler import compile_in_process
from pampero.constraints.distinct_keys import KeyIndex
from pampero.constraints.registry import BackendRegistry
from tests.unit.test_constraints_contract import (  # noqa: F401 - fixtures
    Walker,
    lookup,
    vocabulary,
    walker,
)

ANY_OBJECT = ConstraintSpec(kind="json_object", value=None, param="response_format")
MAP = ConstraintSpec(
    kind="json_schema",
    value=json.dumps({"type": "object", "additionalProperties": {"type": "integer"}}),
    param="response_format",
)


@pytest.fixture(scope="module")
def index(walker: Walker) -> KeyIndex:  # noqa: F811 - fixture
    return KeyIndex.of(walker.vocabulary)


@pytest.mark.parametrize("backend", ["guidance", "xgrammar"])
@pytest.mark.parametrize("spec", [ANY_OBJECT, MAP], ids=["json_object", "map"])
@pytest.mark.parametrize(
    "target",
    [
        '{"a":1,"a":2}',  # the key again, token by token
        '{"name":1,"name":2}',  # "name" and '":' are single tokens
        '{"x":{"a":1},"x":3}',  # the outer object's key, after a nested object
        '{\n  "description": 1,\n  "description": 2\n}',
    ],
)
def test_a_key_is_never_written_twice_in_one_object(
    backend: str,
    spec: ConstraintSpec,
    target: str,
    walker: Walker,  # noqa: F811 - fixture
    index: KeyIndex,
) -> None:
    registry = BackendRegistry()
    if backend not in registry.available():
        pytest.skip(f"{backend} is not installed")
    if spec.kind == "json_object" and backend == "xgrammar" and "\n" in target:
        pytest.skip("xgrammar's any-JSON grammar has no line breaks")
    if spec is MAP and target.count("{") > 1:
        pytest.skip("the map's values are integers")
    compiled = compile_in_process(registry.backend(backend), spec, walker.vocabulary)
    keyed = type(compiled)(**{**compiled.__dict__, "key_index": index})

    def pairs(text: str) -> list[list[tuple[str, object]]]:
        found: list[list[tuple[str, object]]] = []
        json.loads(text, object_pairs_hook=lambda items: found.append(items) or dict(items))
        return found

    assert any(len({k for k, _ in o}) < len(o) for o in pairs(walker.walk(compiled, target)))
    text = walker.walk(keyed, target)
    assert text != target
    for pairs_of_object in pairs(text):
        names = [name for name, _ in pairs_of_object]
        assert len(names) == len(set(names)), text


def test_the_same_key_in_different_objects_is_fine(
    walker: Walker,  # noqa: F811 - fixture
    index: KeyIndex,
) -> None:
    guidance = BackendRegistry().backend("guidance")
    compiled = compile_in_process(guidance, ANY_OBJECT, walker.vocabulary)
    keyed = type(compiled)(**{**compiled.__dict__, "key_index": index})
    target = '{"a":{"a":1,"b":{"a":2}},"b":[{"a":3},{"a":4}],"c":"a\\"b"}'
    assert walker.walk(keyed, target) == target
