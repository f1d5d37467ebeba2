"""JSON constraints break a cycle inside one string or number (``"1234567890123..."``,
``1000000...``) once it has run ``PERIOD_SPAN`` tokens, and change nothing else: not a long
string that does not repeat, not structure that does (an array of zeros)."""

from __future__ import annotations

import json

import pytest

from pampero.constraints.base import CompiledConstraint, ConstraintSpec
from pampero.constraints.compiler import compile_in_process
from pampero.constraints.literal_loops import MAX_PERIOD, PERIOD_SPAN, LoopIndex, cycle
from pampero.constraints.registry import BackendRegistry
from tests.unit.test_constraints_contract import (  # noqa: F401 - fixtures
    Walker,
    lookup,
    vocabulary,
    walker,
)

ANY_OBJECT = ConstraintSpec(kind="json_object", value=None, param="response_format")
SCHEMA = ConstraintSpec(
    kind="json_schema",
    value=json.dumps(
        {
            "type": "object",
            "properties": {"isbn": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["isbn"],
        }
    ),
    param="response_format",
)


@pytest.fixture(scope="module")
def index(walker: Walker) -> LoopIndex:  # noqa: F811 - fixture
    return LoopIndex.of(walker.vocabulary)


def guarded(compiled: CompiledConstraint, index: LoopIndex) -> CompiledConstraint:
    return type(compiled)(**{**compiled.__dict__, "loop_index": index})


def test_cycle_finds_the_shortest_period_over_the_span() -> None:
    assert cycle([7] * (PERIOD_SPAN - 1)) == 0
    assert cycle([7] * PERIOD_SPAN) == 1
    assert cycle([1, 2, 3] * 11) == 3  # 33 tokens
    assert cycle([9, *([1, 2, 3] * 10)]) == 0  # 31 repeating tokens: not yet
    long = list(range(MAX_PERIOD))
    assert cycle(long * 3) == MAX_PERIOD
    assert cycle(list(range(MAX_PERIOD + 1)) * 3) == 0  # too long a cycle to count
    assert cycle(list(range(PERIOD_SPAN))) == 0


@pytest.mark.parametrize("backend", ["guidance", "xgrammar"])
@pytest.mark.parametrize(
    ("spec", "target", "field"),
    [
        (SCHEMA, '{"isbn": "' + "1234567890" * 20 + '"}', "isbn"),
        (SCHEMA, '{"isbn": "x", "n": 1' + "0" * 80 + "}", "n"),
        (ANY_OBJECT, '{"k": "' + " :" * 60 + '"}', "k"),
        (ANY_OBJECT, '{"' + "ab" * 70 + '": 1}', None),  # a key loops too
    ],
    ids=["digits-in-a-string", "zeros-in-a-number", "punctuation-in-a-string", "key"],
)
def test_a_cycle_inside_a_literal_is_broken(
    backend: str,
    spec: ConstraintSpec,
    target: str,
    field: str | None,
    walker: Walker,  # noqa: F811 - fixture
    index: LoopIndex,
) -> None:
    registry = BackendRegistry()
    if backend not in registry.available():
        pytest.skip(f"{backend} is not installed")
    compiled = compile_in_process(registry.backend(backend), spec, walker.vocabulary)
    assert walker.walk(compiled, target, max_steps=400) == target  # unguarded: it loops on
    text = walker.walk(guarded(compiled, index), target, max_steps=400)
    value = json.loads(text)  # still valid JSON, and still what the schema asks for
    assert len(text) < len(target) - 40, text

    def literal(value: dict[str, object]) -> str:
        return str(value[field]) if field else next(iter(value))

    # The cycle ran its span (a token per digit, or a few characters per token), then stopped.
    written = literal(value)
    assert PERIOD_SPAN <= len(written) <= 4 * PERIOD_SPAN, written
    assert literal(json.loads(target)).startswith(written)


@pytest.mark.parametrize(
    "target",
    [
        '{"a": [' + ", ".join(["0"] * 60) + "]}",  # structure that repeats is left alone
        '{"a": "' + " ".join(f"word{i}" for i in range(60)) + '"}',  # long, no cycle
        '{"a": "' + "ab" * 12 + '", "b": "' + "ab" * 12 + '", "c": "' + "ab" * 12 + '"}',
        '{"a": 1' + "0" * 20 + ', "b": "' + "9" * 20 + '"}',  # short runs
    ],
    ids=["array-of-zeros", "long-text", "repeats-across-strings", "short-runs"],
)
def test_everything_else_is_untouched(
    target: str,
    walker: Walker,  # noqa: F811 - fixture
    index: LoopIndex,
) -> None:
    guidance = BackendRegistry().backend("guidance")
    compiled = compile_in_process(guidance, ANY_OBJECT, walker.vocabulary)
    assert walker.walk(guarded(compiled, index), target, max_steps=400) == target


def test_the_mask_is_kept_when_only_the_cycle_may_continue(
    walker: Walker,  # noqa: F811 - fixture
    index: LoopIndex,
) -> None:
    """A string that may only hold digits and must be 60 long: masking the digits would leave
    no token, so nothing is masked and the output still satisfies the schema."""
    schema = {"type": "string", "pattern": "^[0-9]{60}$"}
    spec = ConstraintSpec(kind="json_schema", value=json.dumps(schema), param="response_format")
    guidance = BackendRegistry().backend("guidance")
    compiled = compile_in_process(guidance, spec, walker.vocabulary)
    target = '"' + "1234567890" * 6 + '"'
    assert walker.walk(guarded(compiled, index), target, max_steps=400) == target


def test_index_marks_tokens_made_only_of_given_bytes(
    index: LoopIndex,
    lookup: dict[bytes, int],  # noqa: F811 - fixture
) -> None:
    made = index.made_of(b"1234567890")
    assert made[lookup[b"7"]]
    assert not made[lookup[b'"']] and not made[lookup[b"a"]]
    assert not made[lookup[b" 7"]] if b" 7" in lookup else True
