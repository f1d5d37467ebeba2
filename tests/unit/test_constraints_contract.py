"""One contract, every constraint backend, the real Qwen2.5 vocabulary.

For each spec kind a backend supports, walking its matcher (towards a target text, or at random,
then by a fixed preference that closes structures) always ends, by the grammar's own end, in
output that is valid: it parses and validates as JSON Schema, fully matches the regex, is one of
the choices, parses under the grammar. Refused tokens change nothing, special tokens never
appear, sequences do not share state, and kinds a backend cannot express are a 400.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from pampero.assets import ensure_default_model
from pampero.constraints.base import CompiledConstraint, ConstraintSpec, ConstraintVocabulary
from pampero.constraints.compiler import compile_in_process
from pampero.constraints.registry import BackendRegistry
from pampero.constraints.schema_rewrite import rewrite_spec
from pampero.constraints.vocab import vocabulary_from_tokenizer
from pampero.engines.llamacpp.tokenizer import load_vocab_only
from pampero.errors import InvalidRequestError, UnsupportedParameter
from pampero.settings import default_home
from tests.unit.test_schema_intersect import NODE_WITH_ALL_OF  # shared: guidance refused it

BACKENDS = ["xgrammar", "guidance", "outlines", "lm-format-enforcer"]
IM_START = 151644

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name", "age"],
}
SHAPE = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["circle", "square"]},
        "at": {
            "type": "object",
            "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
            "required": ["x", "y"],
        },
        "label": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["kind", "at", "label"],
}
# oneOf with disjoint branches and dependentRequired: rewritten exactly (schema_rewrite.py).
UNION = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"kind": {"const": "circle"}, "r": {"type": "integer"}},
            "required": ["kind", "r"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"kind": {"const": "square"}, "side": {"type": "integer"}},
            "required": ["kind", "side"],
            "additionalProperties": False,
        },
    ]
}
DEPENDENT = {
    "type": "object",
    "properties": {
        "card": {"type": "string", "maxLength": 8},
        "billing": {"type": "string", "maxLength": 8},
    },
    "dependentRequired": {"card": ["billing"]},
    "additionalProperties": False,
}
NAMES = {"a": {"type": "string", "maxLength": 4}, "b": {"type": "string", "maxLength": 4}}
# Clauses that must hold together with their siblings: allOf, and anyOf beside properties.
ALL_OF = {
    "type": "object",
    "properties": NAMES,
    "allOf": [{"required": ["b"]}],
    "additionalProperties": False,
}
SIBLING_ANY_OF = {
    "type": "object",
    "properties": NAMES,
    "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
    "additionalProperties": False,
}
GROUPS = {
    "type": "object",
    "properties": {
        "length": {"type": "integer"},
        "radius": {"type": "integer"},
        "width": {"type": "integer"},
    },
    "oneOf": [{"required": ["length", "width"]}, {"required": ["radius"]}],
    "additionalProperties": False,
}
GROUPS_TYPED = {  # the branches say more than required (Github_trivial o19070's shape)
    "type": "object",
    "properties": {"id": {"type": "string"}},
    "oneOf": [
        {"type": "object", "required": ["id", "win"], "properties": {"win": {"type": "integer"}}},
        {"type": "object", "required": ["id", "lose"], "properties": {"lose": {"type": "integer"}}},
    ],
}
# What each backend refuses (a 400) rather than loosen.
UNSUPPORTED = {
    "xgrammar": [
        "json_unique",
        "json_dependencies",
        "json_all_of",
        "json_sibling_any_of",
        "json_required_groups",
        "json_required_groups_typed",
        "json_recursive_all_of",
        "json_pattern_meets_property",
        "json_required_unlisted",
        "json_whitespace",
    ],
    "guidance": ["json_unique"],
    "outlines": [
        "json_bounds",
        "json_unique",
        "json_dependencies",
        "json_all_of",
        "json_sibling_any_of",
        "json_required_groups",
        "json_required_groups_typed",
        "json_recursive_all_of",
        "json_pattern_meets_property",
        "json_required_unlisted",
        "gbnf",
        "lark",
    ],
    "lm-format-enforcer": [
        "json_bounds",
        "json_unique",
        "json_dependencies",
        "json_all_of",
        "json_sibling_any_of",
        "json_required_groups",
        "json_required_groups_typed",
        "json_recursive_all_of",
        "json_pattern_meets_property",
        "json_required_unlisted",
        "json_whitespace",
        "gbnf",
        "lark",
    ],
}
PATTERNED = {  # "next" also meets the pattern matching every name
    "$defs": {
        "item": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "next": {"type": "object"}},
            "patternProperties": {".*": {"anyOf": [{"$ref": "#/$defs/item"}, {"type": "string"}]}},
            "required": ["name"],
        }
    },
    "$ref": "#/$defs/item",
}
UNLISTED = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a", "b"]}
BOUNDS = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "minimum": 1, "maximum": 9},
        "x": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
    },
    "required": ["n", "x"],
}
UNIQUE = {"type": "array", "items": {"enum": [1, 2, 3]}, "uniqueItems": True}
CHOICES = ("yes", "no", "maybe so", 'say "hi"', "naïve ☃")
GBNF = r"""
root   ::= expr
expr   ::= term (("+" | "-") term)*
term   ::= factor (("*" | "/") factor)*
factor ::= [0-9]+ | "(" expr ")"
"""
LARK = r"""
start: expr
expr: term (("+" | "-") term)*
term: factor (("*" | "/") factor)*
factor: /[0-9]+/ | "(" expr ")"
"""


def _schema(value: dict[str, Any], **extra: Any) -> ConstraintSpec:
    text = json.dumps(value, sort_keys=True)
    return ConstraintSpec(kind="json_schema", value=text, param="guided_json", **extra)


def _arithmetic(text: str) -> bool:
    """A recursive-descent parser for the GBNF/Lark grammar above."""
    pos = 0

    def factor() -> bool:
        nonlocal pos
        if pos < len(text) and text[pos] == "(":
            pos += 1
            if not expr() or pos >= len(text) or text[pos] != ")":
                return False
            pos += 1
            return True
        start = pos
        while pos < len(text) and text[pos].isascii() and text[pos].isdigit():
            pos += 1
        return pos > start

    def chain(item: Callable[[], bool], ops: str) -> bool:
        nonlocal pos
        if not item():
            return False
        while pos < len(text) and text[pos] in ops:
            pos += 1
            if not item():
                return False
        return True

    def term() -> bool:
        return chain(factor, "*/")

    def expr() -> bool:
        return chain(term, "+-")

    return expr() and pos == len(text)


def _valid_json(schema: dict[str, Any]) -> Callable[[str], None]:
    def check(text: str) -> None:
        jsonschema.validate(json.loads(text), schema)

    return check


def _is_object(text: str) -> None:
    assert isinstance(json.loads(text), dict)


def _matches(pattern: str) -> Callable[[str], None]:
    return lambda text: _assert(re.fullmatch(pattern, text) is not None, text)


def _assert(ok: bool, text: str) -> None:
    assert ok, text


CASES: dict[str, tuple[ConstraintSpec, list[str], Callable[[str], None]]] = {
    "json_schema": (
        _schema(PERSON),
        ['{"name": "Ada", "age": 36, "tags": ["x", "y"]}', '{"name":"B","age":1}'],
        _valid_json(PERSON),
    ),
    "json_schema_nested": (
        _schema(SHAPE),
        ['{"kind": "square", "at": {"x": 1.5, "y": -2}, "label": null}'],
        _valid_json(SHAPE),
    ),
    "json_bounds": (
        _schema(BOUNDS),
        ['{"n": 5, "x": 0.5}', '{"n": 0, "x": 0}', '{"n": 10, "x": 100.5}'],
        _valid_json(BOUNDS),
    ),
    "json_unique": (_schema(UNIQUE), ["[1, 1]"], _valid_json(UNIQUE)),
    "json_one_of": (
        _schema(UNION),
        [
            '{"kind": "circle", "r": 2}',
            '{"kind": "square", "side": 3}',
            '{"kind": "circle", "side": 3}',
        ],
        _valid_json(UNION),
    ),
    "json_dependencies": (
        _schema(DEPENDENT),
        ['{"card": "1234", "billing": "x"}', '{"card": "1234"}', '{"billing": "x"}', "{}"],
        _valid_json(DEPENDENT),
    ),
    "json_all_of": (_schema(ALL_OF), ['{"a": "x"}', '{"b": "y"}'], _valid_json(ALL_OF)),
    "json_sibling_any_of": (
        _schema(SIBLING_ANY_OF),
        ["{}", '{"b": "y"}'],
        _valid_json(SIBLING_ANY_OF),
    ),
    "json_required_groups": (
        _schema(GROUPS),
        ['{"length": 1, "radius": 3, "width": 2}', '{"radius": 3}', "{}"],
        _valid_json(GROUPS),
    ),
    "json_required_groups_typed": (
        _schema(GROUPS_TYPED),
        ['{"id": "g", "win": 1, "lose": 2}', '{"id": "g", "lose": 2}', '{"id": "g"}'],
        _valid_json(GROUPS_TYPED),
    ),
    "json_recursive_all_of": (
        _schema(NODE_WITH_ALL_OF),
        ['{"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}]}', '{"kids": [{"kids": []}]}'],
        _valid_json(NODE_WITH_ALL_OF),
    ),
    "json_pattern_meets_property": (
        _schema(PATTERNED),
        ['{"name": "a", "next": {"name": "b"}, "x": "y"}', '{"name": "a", "next": "b"}'],
        _valid_json(PATTERNED),
    ),
    "json_required_unlisted": (
        _schema(UNLISTED),
        ['{"a": 1, "b": 2}', '{"a": 1}'],
        _valid_json(UNLISTED),
    ),
    "json_whitespace": (
        _schema(PERSON, whitespace_pattern=r"[ ]?"),
        ['{"name": "Ada", "age": 36}'],
        _valid_json(PERSON),
    ),
    "json_object": (
        ConstraintSpec(kind="json_object", value=None, param="response_format"),
        ['{"a": 1, "b": "two", "c": [true, null]}', "{}"],
        _is_object,
    ),
    "regex": (
        ConstraintSpec(
            kind="regex", value=r"[0-9]{3}-[a-z]+@(example|test)\.(com|org)", param="guided_regex"
        ),
        ["123-abc@test.org", "999-z@example.com"],
        _matches(r"[0-9]{3}-[a-z]+@(example|test)\.(com|org)"),
    ),
    "regex_words": (
        ConstraintSpec(kind="regex", value=r"[A-Z][a-z]{2,5}( [a-z]+){0,3}!", param="guided_regex"),
        ["Hello big world!"],
        _matches(r"[A-Z][a-z]{2,5}( [a-z]+){0,3}!"),
    ),
    "choice": (
        ConstraintSpec(kind="choice", value=CHOICES, param="guided_choice"),
        list(CHOICES),
        lambda text: _assert(text in CHOICES, text),
    ),
    "gbnf": (
        ConstraintSpec(kind="grammar", value=GBNF, param="guided_grammar", grammar_syntax="gbnf"),
        ["(1+2)*3", "42", "7/(8-9)*10"],
        lambda text: _assert(_arithmetic(text), text),
    ),
    "lark": (
        ConstraintSpec(kind="grammar", value=LARK, param="guided_grammar", grammar_syntax="lark"),
        ["(1+2)*3", "5-6"],
        lambda text: _assert(_arithmetic(text), text),
    ),
}


@pytest.fixture(scope="module")
def vocabulary() -> Iterator[ConstraintVocabulary]:
    home = Path(os.environ["PAMPERO_HOME"]) if os.environ.get("PAMPERO_HOME") else default_home()
    tokenizer = load_vocab_only(ensure_default_model(home, progress=lambda done, total: None))
    yield vocabulary_from_tokenizer(tokenizer)


@pytest.fixture(scope="module")
def registry() -> BackendRegistry:
    return BackendRegistry()


@pytest.fixture(scope="module")
def lookup(vocabulary: ConstraintVocabulary) -> dict[bytes, int]:
    closed = vocabulary.special_ids | vocabulary.eos_ids
    found: dict[bytes, int] = {}
    for i, piece in enumerate(vocabulary.pieces):
        if piece and i not in closed:
            found.setdefault(piece, i)
    return found


@pytest.fixture(scope="module")
def compiled_cache() -> dict[tuple[str, str], CompiledConstraint]:
    return {}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, registry: BackendRegistry) -> str:
    name: str = request.param
    if name not in registry.available():
        pytest.skip(f"{name} is not installed (pip install 'pampero[structured-all]')")
    return name


def _compiled(
    cache: dict[tuple[str, str], CompiledConstraint],
    registry: BackendRegistry,
    vocabulary: ConstraintVocabulary,
    backend: str,
    case: str,
) -> CompiledConstraint:
    spec = CASES[case][0]
    if case in UNSUPPORTED[backend]:
        pytest.skip(f"{backend} does not express {case} (tested in test_unsupported_kinds)")
    if (backend, case) not in cache:
        cache[(backend, case)] = compile_in_process(registry.backend(backend), spec, vocabulary)
    return cache[(backend, case)]


class Walker:
    """Drives a matcher: towards a target text, then (or at random for a while) by a fixed
    preference (an end token, then a closing character, then the lowest allowed token id, but
    never one token four times in a row), ending on an end token or when the matcher says the
    output is complete."""

    CLOSERS = ('"', "}", "]", ")")

    def __init__(self, vocabulary: ConstraintVocabulary, lookup: dict[bytes, int]) -> None:
        self.vocabulary = vocabulary
        self.lookup = lookup
        self.first = sorted(vocabulary.eos_ids) + [lookup[c.encode()] for c in self.CLOSERS]

    def walk(
        self,
        compiled: CompiledConstraint,
        target: str = "",
        *,
        rng: random.Random | None = None,
        random_steps: int = 0,
        max_steps: int = 300,
    ) -> str:
        matcher = compiled.new_matcher()
        mask = np.zeros(self.vocabulary.size, dtype=np.bool_)
        out = bytearray()
        remaining = target.encode()
        recent: list[int] = []
        for step in range(max_steps):
            if matcher.is_terminated():
                break
            matcher.fill_allowed(mask)
            assert mask.any(), f"dead end after {bytes(out)!r}"
            assert not mask[IM_START]
            token = self._choose(mask, remaining, rng if step < random_steps else None, recent)
            assert matcher.accept(token), f"refused token {token} it allowed"
            if token in self.vocabulary.eos_ids:
                break
            recent = [*recent[-2:], token]
            piece = self.vocabulary.pieces[token]
            out += piece
            remaining = remaining[len(piece) :] if remaining.startswith(piece) else b""
        else:
            pytest.fail(f"no end after {max_steps} tokens: {bytes(out)!r}")
        assert matcher.is_terminated()
        return out.decode("utf-8")

    def _choose(
        self, mask: np.ndarray, remaining: bytes, rng: random.Random | None, recent: list[int]
    ) -> int:
        for n in range(min(len(remaining), 32), 0, -1):
            token = self.lookup.get(remaining[:n])
            if token is not None and mask[token]:
                return token
        allowed = np.flatnonzero(mask)
        if rng is not None:
            return int(rng.choice(allowed))
        for token in self.first:
            if mask[token]:
                return token
        stuck = recent[0] if len(recent) == 3 and len(set(recent)) == 1 else -1
        return int(next((t for t in allowed if t != stuck), allowed[0]))


@pytest.fixture(scope="module")
def walker(vocabulary: ConstraintVocabulary, lookup: dict[bytes, int]) -> Walker:
    return Walker(vocabulary, lookup)


@pytest.mark.parametrize("case", list(CASES))
def test_walks_end_in_valid_output(
    backend: str,
    case: str,
    walker: Walker,
    registry: BackendRegistry,
    vocabulary: ConstraintVocabulary,
    compiled_cache: dict[tuple[str, str], CompiledConstraint],
) -> None:
    compiled = _compiled(compiled_cache, registry, vocabulary, backend, case)
    _, targets, check = CASES[case]
    for target in [*targets, ""]:
        check(walker.walk(compiled, target))
    if case == "choice":  # every choice is reachable
        assert {walker.walk(compiled, t) for t in targets} == set(CHOICES)


@pytest.mark.parametrize(
    "case", ["json_schema", "json_bounds", "json_object", "regex_words", "gbnf"]
)
def test_random_walks_end_in_valid_output(
    backend: str,
    case: str,
    walker: Walker,
    registry: BackendRegistry,
    vocabulary: ConstraintVocabulary,
    compiled_cache: dict[tuple[str, str], CompiledConstraint],
) -> None:
    compiled = _compiled(compiled_cache, registry, vocabulary, backend, case)
    check = CASES[case][2]
    rng = random.Random(f"{backend}/{case}")
    for _ in range(3):
        check(walker.walk(compiled, rng=rng, random_steps=12, max_steps=400))


def test_refused_tokens_change_nothing(
    backend: str,
    walker: Walker,
    registry: BackendRegistry,
    vocabulary: ConstraintVocabulary,
    compiled_cache: dict[tuple[str, str], CompiledConstraint],
) -> None:
    compiled = _compiled(compiled_cache, registry, vocabulary, backend, "json_schema")
    matcher = compiled.new_matcher()
    before = np.zeros(vocabulary.size, dtype=np.bool_)
    matcher.fill_allowed(before)
    refused = [
        walker.lookup[b"x"],
        walker.lookup[b"}"],
        IM_START,
        *sorted(vocabulary.eos_ids),
        -1,
        vocabulary.size,
    ]
    for token in refused:
        assert not matcher.accept(token), token
    after = np.zeros(vocabulary.size, dtype=np.bool_)
    matcher.fill_allowed(after)
    assert np.array_equal(before, after)
    assert not matcher.is_terminated()
    assert matcher.accept(walker.lookup[b"{"])


def test_sequences_do_not_share_state(
    backend: str,
    walker: Walker,
    registry: BackendRegistry,
    vocabulary: ConstraintVocabulary,
    compiled_cache: dict[tuple[str, str], CompiledConstraint],
) -> None:
    compiled = _compiled(compiled_cache, registry, vocabulary, backend, "choice")
    first, second = compiled.new_matcher(), compiled.new_matcher()
    start = np.zeros(vocabulary.size, dtype=np.bool_)
    second.fill_allowed(start)
    for piece in (b"y", b"es"):
        assert first.accept(walker.lookup[piece])
    assert first.is_terminated()
    now = np.zeros(vocabulary.size, dtype=np.bool_)
    second.fill_allowed(now)
    assert np.array_equal(start, now)
    assert not second.is_terminated()
    for piece in (b"no",):
        assert second.accept(walker.lookup[piece])
    assert second.is_terminated()
    # After an end token nothing more is accepted.
    eos = min(vocabulary.eos_ids)
    assert second.accept(eos)
    assert not second.accept(walker.lookup[b"no"])
    second.fill_allowed(now)
    assert not now.any()


def test_a_longer_mask_is_filled_and_padded(
    backend: str,
    registry: BackendRegistry,
    vocabulary: ConstraintVocabulary,
    compiled_cache: dict[tuple[str, str], CompiledConstraint],
) -> None:
    compiled = _compiled(compiled_cache, registry, vocabulary, backend, "choice")
    exact = np.zeros(vocabulary.size, dtype=np.bool_)
    wider = np.ones(vocabulary.size + 64, dtype=np.bool_)
    matcher = compiled.new_matcher()
    matcher.fill_allowed(exact)
    matcher.fill_allowed(wider)
    assert np.array_equal(wider[: vocabulary.size], exact)
    assert not wider[vocabulary.size :].any()


def test_unsupported_kinds(
    backend: str, registry: BackendRegistry, vocabulary: ConstraintVocabulary
) -> None:
    refused = []
    for case, (spec, _, _) in CASES.items():
        named = ConstraintSpec(**{**spec.__dict__, "backend": backend})
        try:
            registry.candidates(rewrite_spec(named))
            if case in UNSUPPORTED[backend]:  # refused when compiling, never silently loosened
                compile_in_process(registry.backend(backend), spec, vocabulary)
        except UnsupportedParameter as exc:
            assert exc.param == spec.param
            assert backend in exc.message or "grammar" in exc.message
            refused.append(case)
    assert refused == UNSUPPORTED[backend]


MALFORMED = [
    ConstraintSpec(kind="regex", value="(ab", param="guided_regex"),
    ConstraintSpec(kind="regex", value=42, param="structured_outputs.regex"),
    ConstraintSpec(kind="json_schema", value='{"type": "foo"}', param="guided_json"),
    ConstraintSpec(kind="json_schema", value='{"type": "object"', param="guided_json"),
    ConstraintSpec(kind="json_schema", value="[1, 2]", param="response_format.json_schema.schema"),
    ConstraintSpec(kind="json_schema", value='{"$ref": "#/$defs/missing"}', param="guided_json"),
    ConstraintSpec(kind="json_schema", value='{"minLength": "three"}', param="guided_json"),
    ConstraintSpec(kind="choice", value=("a", 3), param="guided_choice"),
    ConstraintSpec(kind="choice", value=(), param="guided_choice"),
    ConstraintSpec(kind="grammar", value="  ", param="guided_grammar"),
]


@pytest.mark.parametrize("spec", MALFORMED, ids=lambda s: f"{s.kind}:{s.value!r}"[:40])
def test_malformed_specs_are_a_400_naming_the_field(
    backend: str, spec: ConstraintSpec, registry: BackendRegistry, vocabulary: ConstraintVocabulary
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        compile_in_process(registry.backend(backend), spec, vocabulary)
    assert not isinstance(info.value, UnsupportedParameter)
    assert info.value.param == spec.param


GRAMMAR_ERRORS = [
    ConstraintSpec(kind="grammar", value='root ::= "a" | (', param="guided_grammar"),
    ConstraintSpec(kind="grammar", value="root ::= missing", param="guided_grammar"),
    ConstraintSpec(kind="grammar", value="start: (", param="guided_grammar"),
]


@pytest.mark.parametrize("spec", GRAMMAR_ERRORS, ids=lambda s: str(s.value))
def test_grammar_syntax_errors_are_a_400(
    backend: str, spec: ConstraintSpec, registry: BackendRegistry, vocabulary: ConstraintVocabulary
) -> None:
    chosen = registry.backend(backend)
    if chosen.unsupported(spec) is not None:
        pytest.skip(f"{backend} takes no grammars")
    with pytest.raises(InvalidRequestError) as info:
        compile_in_process(chosen, spec, vocabulary)
    assert not isinstance(info.value, UnsupportedParameter)
    assert info.value.param == "guided_grammar"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r".*\?$", r"[^\n]*\?$"),
        (r"a\.b", r"a\.b"),
        (r"[.]x.", r"[.]x[^\n]"),
        (r"[^.]+.", r"[^.]+[^\n]"),
        (r"[]a.]b.", r"[]a.]b[^\n]"),
        (r"[^]a.]b.", r"[^]a.]b[^\n]"),
        (r"\\.", r"\\[^\n]"),
    ],
)
def test_xgrammar_dot_never_matches_a_newline(pattern: str, expected: str) -> None:
    from pampero.constraints.backends.xgrammar import dot_without_newline

    assert dot_without_newline(pattern) == expected


def test_guidance_enforces_the_formats_it_knows_and_passes_over_the_others(
    registry: BackendRegistry, vocabulary: ConstraintVocabulary, walker: Walker
) -> None:
    if "guidance" not in registry.available():
        pytest.skip("guidance is not installed")
    schema = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "format": "jsonpath", "maxLength": 6},
            "day": {"type": "string", "format": "date"},
        },
        "required": ["path", "day"],
        "additionalProperties": False,
    }
    compiled = compile_in_process(registry.backend("guidance"), _schema(schema), vocabulary)
    # (_schema sorts keys: "day" comes first)
    value = json.loads(walker.walk(compiled, '{"day": "2024-01-31", "path": "$.a"}'))
    assert value == {"day": "2024-01-31", "path": "$.a"}  # jsonpath: not checked, not refused
    value = json.loads(walker.walk(compiled, '{"day": "not a date"}'))
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.Draft202012Validator(schema, format_checker=checker).validate(value)


# Regexes beyond the regular core: each backend enforces them exactly (Python's own fullmatch
# holds for every walk) or refuses them before compiling, naming the feature and the field.
# lm-format-enforcer used to take "(?=q)q", ignore the lookahead and spend a minute per mask.
BEYOND_REGULAR = {
    "(?=q)q": "lookaround",
    "(?!b)[ab]c": "lookaround",
    "(?<=a)b": "lookaround",
    r"(a)\1": "backreference",
    "(a)?(?(1)b|c)": "conditional group",
    r"\bab": "word boundary",
    "a$b": "anchor inside the pattern",
    "a++a": "possessive",
    "(?>a+)a": "atomic group",
    "(?i)ab": "(?i)",
    "^ab$": "anchor at the start or end",
}


@pytest.mark.parametrize("pattern", list(BEYOND_REGULAR))
def test_regex_features_are_enforced_or_refused_before_compiling(
    backend: str,
    pattern: str,
    registry: BackendRegistry,
    vocabulary: ConstraintVocabulary,
    walker: Walker,
) -> None:
    spec = ConstraintSpec(kind="regex", value=pattern, param="guided_regex", backend=backend)
    try:
        registry.candidates(spec)
    except UnsupportedParameter as exc:
        assert exc.param == "guided_regex"
        assert BEYOND_REGULAR[pattern] in exc.message, exc.message
        return
    compiled = compile_in_process(registry.backend(backend), spec, vocabulary)
    rng = random.Random(7)
    for _ in range(5):
        text = walker.walk(compiled, rng=rng, random_steps=20, max_steps=40)
        assert re.fullmatch(pattern, text), (backend, pattern, text)


@pytest.mark.parametrize("pattern", ["^(?!tmp).*$", r"^(\w)\1$"])
def test_a_schema_pattern_beyond_the_regular_core_is_refused_by_every_backend(
    pattern: str, registry: BackendRegistry
) -> None:
    spec = _schema({"type": "string", "pattern": pattern})
    with pytest.raises(UnsupportedParameter) as info:
        registry.candidates(spec)
    assert info.value.param == "guided_json"
    for name in registry.available():
        assert name in info.value.message


def test_a_costly_lm_format_enforcer_mask_is_stopped_at_its_cpu_limit(
    registry: BackendRegistry, vocabulary: ConstraintVocabulary
) -> None:
    # The registry refuses a lookahead for every backend (above); given one anyway,
    # lm-format-enforcer's automaton for it took a minute per mask. Now a mask gives up at its
    # CPU limit with a 400 instead of holding the thread that decodes for every request.
    from pampero.constraints.backends.lmfe import MASK_CPU_LIMIT

    if "lm-format-enforcer" not in registry.available():
        pytest.skip("lm-format-enforcer is not installed")
    backend = registry.backend("lm-format-enforcer")
    spec = ConstraintSpec(kind="regex", value="(?=q)q", param="guided_regex")
    rng = random.Random(0)
    mask = np.zeros(vocabulary.size, dtype=np.bool_)
    with pytest.raises(UnsupportedParameter) as info:
        started = time.thread_time()
        matcher = compile_in_process(backend, spec, vocabulary).new_matcher()
        for _ in range(40):  # its masks took 0.1 s to a minute each
            started = time.thread_time()
            matcher.fill_allowed(mask)
            text = [t for t in np.flatnonzero(mask) if t not in vocabulary.eos_ids]
            matcher.accept(int(rng.choice(text)))
    assert time.thread_time() - started < MASK_CPU_LIMIT + 0.5  # the mask that gave up
    assert "CPU time" in info.value.message
