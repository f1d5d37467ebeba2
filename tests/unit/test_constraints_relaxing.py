"""Without ``strict``, the compiler relaxes a schema it cannot compile whole instead of
refusing it: past the server's limits, out of compile time, or beyond every backend. Only a
schema that is itself invalid stays a 400; with ``strict`` every such schema is a 400.

A fake backend plugs in through the registry (the compile workers import it from here), beside
the real guidance backend on the default model's vocabulary.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pampero.assets import ensure_default_model
from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.compiler import BACKSTOP, ConstraintCompiler
from pampero.constraints.registry import BackendRegistry
from pampero.constraints.vocab import vocabulary_from_tokenizer
from pampero.engines.llamacpp.tokenizer import load_vocab_only
from pampero.errors import BeyondLimits, InvalidRequestError, UnsupportedParameter
from pampero.settings import default_home

HERE = "tests.unit.test_constraints_relaxing"
TINY = ConstraintVocabulary("tiny", (b"a", b"b", b""), frozenset(), frozenset({2}), 3)
MARGIN = 1.5
DEADLINE = 1.0


class SpinOnUniqueBackend:
    """Compiles at once, unless the schema says ``uniqueItems``: then it spins forever, as a
    library lost in a schema's combinatorics does."""

    name = "spinunique"

    def unsupported(self, spec: ConstraintSpec) -> str | None:
        return None

    def prepare(self, vocabulary: ConstraintVocabulary) -> None:
        return None

    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        while "uniqueItems" in spec.value:
            pass
        return spec.value

    def load(self, artifact: Any, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        return artifact

    def footprint(self, compiled: Any) -> int:
        return 1000

    def matcher(self, compiled: Any) -> Any:
        return EndOnly()


class EndOnly:
    """A matcher over ``TINY`` that allows only its end token (``b""``, id 2)."""

    def __init__(self) -> None:
        self.ended = False

    def fill_allowed(self, mask: Any) -> None:
        mask.fill(False)
        mask[2] = not self.ended

    def accept(self, token_id: int) -> bool:
        self.ended = self.ended or token_id == 2
        return token_id == 2

    def is_terminated(self) -> bool:
        return self.ended


def schema(value: Any, *, strict: bool, backend: str = "auto") -> ConstraintSpec:
    return ConstraintSpec(
        kind="json_schema",
        value=json.dumps(value),
        param="response_format.json_schema.schema",
        backend=backend,
        strict=strict,
    )


@pytest.fixture(scope="module")
def vocabulary() -> Iterator[ConstraintVocabulary]:
    home = Path(os.environ["PAMPERO_HOME"]) if os.environ.get("PAMPERO_HOME") else default_home()
    tokenizer = load_vocab_only(ensure_default_model(home, progress=lambda done, total: None))
    yield vocabulary_from_tokenizer(tokenizer)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# A real-world shape (JSONSchemaBench Github_medium): a body capped at 128 KiB, past the
# server's limit of 100000 repetitions.
CAPPED = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"body": {"type": "string", "maxLength": 131072}},
            },
        }
    },
}


def test_a_schema_past_the_limits_is_relaxed_unless_strict(
    vocabulary: ConstraintVocabulary,
) -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(vocabulary) as compiler:
            with pytest.raises(BeyondLimits) as info:
                await compiler.compile(schema(CAPPED, strict=True))
            assert "131072" in info.value.message
            assert info.value.param == "response_format.json_schema.schema"
            compiled = await compiler.compile(schema(CAPPED, strict=False))
            assert compiled.backend == "guidance"
            assert compiled.check_after is not None
            assert compiled.check_after.dropped == ("maxLength",)
            assert compiled.check_after.problem('{"items": [{"body": "hi"}]}') is None
            assert "too long" in str(compiled.check_after.problem(json.dumps(
                {"items": [{"body": "x" * 131073}]}
            )))  # fmt: skip

    run(scenario())


def test_definitions_under_any_key_are_relaxed(vocabulary: ConstraintVocabulary) -> None:
    # Definitions as top-level keys, referenced as "#/bolts": guidance refuses the oneOf
    # there, and the relaxation must reach it through the $ref.
    value = {
        "type": "object",
        "bolts": {
            "type": "object",
            "patternProperties": {"^[a-z]+$": {"oneOf": [{"$ref": "#/std"}, {"$ref": "#/nm"}]}},
        },
        "std": {"type": "string"},
        "nm": {"type": "string", "maxLength": 4},
        "properties": {"bolts": {"$ref": "#/bolts"}},
    }

    async def scenario() -> None:
        async with ConstraintCompiler(vocabulary) as compiler:
            with pytest.raises(UnsupportedParameter):
                await compiler.compile(schema(value, strict=True))
            compiled = await compiler.compile(schema(value, strict=False))
            assert compiled.check_after is not None
            assert compiled.check_after.dropped == ("oneOf",)

    run(scenario())


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"type": "array", "uniqueItems": True, "items": {"$ref": "#/$defs/gone"}}, "nothing"),
        ({"type": "array", "uniqueItems": True, "minItems": -1}, "not a valid JSON Schema"),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "refers back"),
        ({"type": "string", "maxLength": 10**7, "items": {"type": 7}}, "not a valid JSON Schema"),
    ],
    ids=["dangling-ref", "bad-count", "ref-cycle", "invalid-beyond-limits"],
)
def test_an_invalid_schema_stays_a_400_without_strict(
    vocabulary: ConstraintVocabulary, value: dict[str, Any], says: str
) -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(vocabulary) as compiler:
            with pytest.raises(InvalidRequestError) as info:
                await compiler.compile(schema(value, strict=False))
            assert type(info.value) is InvalidRequestError, info.value
            assert says in info.value.message
            assert info.value.param == "response_format.json_schema.schema"

    run(scenario())


def test_a_schema_out_of_compile_time_is_relaxed_within_two_deadlines() -> None:
    registry = BackendRegistry({})
    registry.register("spinunique", f"{HERE}:SpinOnUniqueBackend")
    tags = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}

    async def scenario() -> None:
        async with ConstraintCompiler(TINY, registry=registry, deadline=DEADLINE) as compiler:
            await compiler.warm_up(["spinunique"])
            with pytest.raises(BeyondLimits) as info:
                await compiler.compile(schema(tags, strict=True))
            assert "CPU time to compile" in info.value.message
            started = time.monotonic()
            compiled = await compiler.compile(schema(tags, strict=False))
            assert time.monotonic() - started < 2 * DEADLINE * BACKSTOP + MARGIN
            assert compiled.check_after is not None
            assert compiled.check_after.dropped == ("uniqueItems",)
            assert compiled.check_after.problem('["a", "a"]') is not None

    run(scenario())


def calls_or(schema_text: str) -> ConstraintSpec:
    """A grammar around an answer schema, as tools with a response format build it."""
    grammar = f'start: calls | answer\ncalls: "<tool_call>" /[a-z]+/\nanswer: %json {schema_text}\n'
    return ConstraintSpec(
        kind="grammar",
        value=grammar,
        param="response_format",
        grammar_syntax="lark",
        backend="guidance",
    )


@pytest.mark.parametrize(
    ("answer", "dropped"),
    [
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, ("uniqueItems",)),
        ({"type": "string", "pattern": "^(?=.*[0-9])[a-z0-9]{4,8}$"}, ("pattern",)),
    ],
)
def test_a_grammar_around_a_non_strict_schema_is_relaxed_around_it(
    vocabulary: ConstraintVocabulary, answer: dict[str, Any], dropped: tuple[str, ...]
) -> None:
    async def scenario() -> None:
        async with ConstraintCompiler(vocabulary) as compiler:
            with pytest.raises(InvalidRequestError):
                await compiler.compile_around_schema(schema(answer, strict=True), calls_or)
            compiled = await compiler.compile_around_schema(schema(answer, strict=False), calls_or)
            assert compiled.spec.kind == "grammar" and "%json" in compiled.spec.value
            assert compiled.check_after is not None
            assert compiled.check_after.dropped == dropped
            if "pattern" in dropped:  # the length the pattern implied is still enforced
                assert '"maxLength":8' in compiled.spec.value
            invalid = {"type": "array", "uniqueItems": True, "items": {"$ref": "#/$defs/gone"}}
            with pytest.raises(InvalidRequestError) as info:
                await compiler.compile_around_schema(schema(invalid, strict=False), calls_or)
            assert "points to nothing" in info.value.message

    run(scenario())


CHAIN = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(150)} | {"d150": {"type": "string"}}


@pytest.mark.parametrize(
    ("value", "beyond"),
    [
        ({"type": "string", "maxLength": 10**7}, True),
        ({"type": "array", "minItems": 10**6}, True),
        ({"type": "string", "pattern": "^a{1000000}$"}, True),
        ({"$defs": CHAIN, "$ref": "#/$defs/d0"}, True),
        ({"type": "string", "maxLength": -1}, False),
        ({"$ref": "#/$defs/none"}, False),
        ({"$ref": "https://example.com/remote.json"}, False),
    ],
    ids=["maxLength", "minItems", "pattern-count", "ref-chain", "bad", "dangling", "remote"],
)
def test_validation_tells_size_from_malformation(value: dict[str, Any], beyond: bool) -> None:
    from pampero.constraints.validation import validate

    with pytest.raises(InvalidRequestError) as info:
        validate(schema(value, strict=False))
    assert isinstance(info.value, BeyondLimits) is beyond, info.value


def test_only_the_patterns_no_backend_takes_are_dropped(vocabulary: ConstraintVocabulary) -> None:
    value = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^(?=.*[0-9])[a-z0-9]{4,8}$"},
            "slug": {"type": "string", "pattern": "^[a-z]+(-[a-z]+)*$"},
        },
        "required": ["code", "slug"],
    }

    async def scenario() -> None:
        async with ConstraintCompiler(vocabulary) as compiler:
            compiled = await compiler.compile(schema(value, strict=False))
            assert compiled.check_after is not None
            assert compiled.check_after.dropped == ("pattern",)
            enforced = json.loads(compiled.spec.value)["properties"]
            assert enforced["slug"] == value["properties"]["slug"]  # still enforced
            assert enforced["code"] == {"type": "string", "minLength": 4, "maxLength": 8}

    run(scenario())
