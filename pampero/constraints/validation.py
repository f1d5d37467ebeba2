"""Checks every spec passes before any backend sees it, whatever backend is chosen.

A malformed value (a regex Python cannot parse, a schema that is not a JSON Schema, a ``$ref``
that points nowhere or recurses without consuming any text, which no backend and no validator
can follow, a value of the wrong type) is an ``InvalidRequestError`` naming the field. A
well-formed value past what this server compiles (repetition counts, nesting and ``$ref``
chains beyond ``Limits``) is ``BeyondLimits``: still a 400 for a strict constraint, while a
non-strict schema is relaxed around it (``schema_relax``). Runs in the compile worker, under
the deadline, since a huge schema takes a while to walk.

Example::

    validate(ConstraintSpec(kind="regex", value="a{9999999}", param="guided_regex"))
    # InvalidRequestError: the regex repeats 9999999 times; the limit is 100000
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pampero.constraints.base import ConstraintSpec
from pampero.errors import BeyondLimits, InvalidRequestError

_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_GBNF_RULE = re.compile(r"^\s*[A-Za-z_][\w-]*\s*::=", re.MULTILINE)
# Keywords that never make an instance invalid (plus any "x-..." extension).
ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$anchor",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "contentMediaType",
        "contentEncoding",
    }
)
# A pseudo-keyword for ``anyOf``/``oneOf`` in a schema that also constrains by other keywords
# (the two must then hold together): the character- and regex-level backends and xgrammar take
# the branches alone and let through what the siblings forbid, so they refuse it.
COMBINED_BRANCHES = "anyOf/oneOf beside other keywords"
# A pseudo-keyword for ``true``/``false`` as a property's or a branch's schema (not the common
# ``additionalProperties: false``), which lm-format-enforcer cannot read.
BOOLEAN_SUBSCHEMA = "true/false as a property or branch schema"
# A pseudo-keyword for a listed property that a ``patternProperties`` entry of the same object
# also matches (both schemas must then hold): xgrammar applies only the listed one.
PATTERN_MEETS_PROPERTY = "patternProperties matching a listed property"
# A pseudo-keyword for ``required`` naming a property its object does not list: xgrammar allows
# no unlisted property (its strict mode) and drops the requirement instead.
REQUIRED_UNLISTED = "required naming a property not in properties"
_BRANCH_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
# Keywords whose value maps names to subschemas (their keys are names, not keywords).
_NAME_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
COUNT_KEYWORDS = (
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
)
# Subschemas that apply at the same place in the instance as their parent.
_IN_PLACE = ("allOf", "anyOf", "oneOf")
_IN_PLACE_ONE = ("not", "if", "then", "else")


@dataclass(frozen=True)
class Limits:
    """Shapes no backend is asked to compile."""

    max_repetition: int = 100_000  # a{n}, minLength, maxItems, ...
    max_nesting: int = 128  # regex groups, JSON nesting of a schema document
    max_ref_depth: int = 100  # a chain of $ref, each inside the previous target


DEFAULT_LIMITS = Limits()


def validate(spec: ConstraintSpec, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise ``InvalidRequestError`` (``param=spec.param``) unless ``spec`` is well formed."""
    _CHECKS[spec.kind](spec, limits)
    if spec.whitespace_pattern is not None:
        if spec.kind not in ("json_schema", "json_object"):
            raise InvalidRequestError(
                "a whitespace pattern only applies to JSON constraints",
                param="guided_whitespace_pattern",
            )
        _check_regex(spec.whitespace_pattern, "guided_whitespace_pattern", limits)


def grammar_syntax(spec: ConstraintSpec) -> Literal["gbnf", "lark"]:
    """The dialect of a grammar spec: as given, else GBNF when it defines rules with ``::=``."""
    if spec.grammar_syntax is not None:
        return spec.grammar_syntax
    return "gbnf" if _GBNF_RULE.search(str(spec.value)) else "lark"


def _fail(spec: ConstraintSpec, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=spec.param)


def _check_json_object(spec: ConstraintSpec, limits: Limits) -> None:
    if spec.value is not None:
        raise _fail(spec, "a json_object constraint takes no value")


def _check_choice(spec: ConstraintSpec, limits: Limits) -> None:
    value = spec.value
    if not isinstance(value, tuple | list) or not value:
        raise _fail(spec, "the choices must be a non-empty list of strings")
    for choice in value:
        if not isinstance(choice, str):
            raise _fail(spec, f"every choice must be a string, but got {type(choice).__name__}")


def _check_grammar(spec: ConstraintSpec, limits: Limits) -> None:
    if not isinstance(spec.value, str) or not spec.value.strip():
        raise _fail(spec, "the grammar must be a non-empty string")
    if spec.grammar_syntax not in (None, "gbnf", "lark"):
        raise _fail(spec, f"unknown grammar syntax {spec.grammar_syntax!r}; use 'gbnf' or 'lark'")


def _check_regex_spec(spec: ConstraintSpec, limits: Limits) -> None:
    if not isinstance(spec.value, str):
        raise _fail(spec, f"the regex must be a string, but got {type(spec.value).__name__}")
    _check_regex(spec.value, spec.param, limits)


def _check_regex(pattern: str, param: str, limits: Limits) -> None:
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise InvalidRequestError(f"invalid regex: {exc}", param=param) from None
    depth, count = regex_shape(pattern)
    if depth > limits.max_nesting:
        raise BeyondLimits(
            f"the regex nests groups {depth} deep; the limit is {limits.max_nesting}", param=param
        )
    if count > limits.max_repetition:
        raise BeyondLimits(
            f"the regex repeats {count} times; the limit is {limits.max_repetition}", param=param
        )


def regex_shape(pattern: str) -> tuple[int, int]:
    """(deepest group nesting, largest ``{m,n}`` count) of a regex, escapes and classes skipped."""
    depth = deepest = biggest = 0
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 1 + pattern.startswith("^", i + 1)
            i += pattern.startswith("]", i)  # a leading ']' is a literal
            continue
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth = max(0, depth - 1)
        elif c == "{" and (m := _QUANTIFIER.match(pattern, i)):
            biggest = max(biggest, int(m[1]), int(m[2] or 0))
            i = m.end()
            continue
        i += 1
    return deepest, biggest


def _check_schema_spec(spec: ConstraintSpec, limits: Limits) -> None:
    if not isinstance(spec.value, str):
        raise _fail(spec, "the JSON schema must be given as JSON text")
    try:
        schema = json.loads(spec.value)
    except (ValueError, RecursionError):
        raise _fail(spec, "the JSON schema is not valid JSON (or nests too deep)") from None
    if not isinstance(schema, dict):
        raise _fail(spec, "a JSON schema must be a JSON object")
    too_deep = BeyondLimits(_too_deep(limits), param=spec.param)
    nodes = list(_walk(schema, limits.max_nesting, lambda: too_deep))
    _check_metaschema(spec, schema)
    targets: dict[str, Any] = {}
    for pointer, node in nodes:
        _check_counts(spec, pointer, node, limits)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and not ref.startswith("#/") and ref != "#":
            continue  # a named anchor: left to the backend
        if isinstance(ref, str) and ref not in targets:
            targets[ref] = _resolve(spec, schema, ref)
    _check_ref_graph(spec, schema, nodes, targets, limits)


def unenforced_keywords(schema_text: str, enforced: frozenset[str]) -> list[str]:
    """The keywords a schema uses that a backend with the ``enforced`` set would ignore (so its
    output could break the schema). Annotations and ``x-`` extensions never count."""
    used = _keywords(schema_text)
    return sorted(k for k in used - enforced - ANNOTATIONS if not k.startswith("x-"))


def ignored_keywords(schema_text: str, ignored: frozenset[str]) -> list[str]:
    """The keywords of ``ignored`` that a schema uses."""
    return sorted(_keywords(schema_text) & ignored)


@lru_cache(maxsize=256)
def _keywords(schema_text: str) -> frozenset[str]:
    """Every keyword (and pseudo-keyword) a schema uses; memoised, since each backend's
    ``unsupported`` asks before any compile."""
    used: set[str] = set()
    stack: list[Any] = [json.loads(schema_text)]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        branching = "anyOf" in node or "oneOf" in node
        if branching and set(node) - ANNOTATIONS - {"anyOf", "oneOf"}:
            used.add(COMBINED_BRANCHES)
        if _pattern_meets_property(node):
            used.add(PATTERN_MEETS_PROPERTY)
        if _required_unlisted(node):
            used.add(REQUIRED_UNLISTED)
        for key, value in node.items():
            used.add(key)
            if _holds_boolean_schema(key, value):
                used.add(BOOLEAN_SUBSCHEMA)
            if key in _NAME_MAPS and isinstance(value, dict):
                stack.extend(value.values())
            elif key not in ("enum", "const", "default", "examples") and isinstance(
                value, dict | list
            ):
                stack.append(value)
    return frozenset(used)


def _holds_boolean_schema(key: str, value: Any) -> bool:
    if key in _NAME_MAPS and isinstance(value, dict):
        return any(isinstance(member, bool) for member in value.values())
    if key in _BRANCH_LISTS and isinstance(value, list):
        return any(isinstance(member, bool) for member in value)
    return False


def _too_deep(limits: Limits) -> str:
    return f"the JSON schema nests deeper than {limits.max_nesting} levels"


def _required_unlisted(node: dict[str, Any]) -> bool:
    required, properties = node.get("required"), node.get("properties")
    if not isinstance(required, list) or not required:
        return False
    listed = properties if isinstance(properties, dict) else {}
    return any(isinstance(name, str) and name not in listed for name in required)


def _pattern_meets_property(node: dict[str, Any]) -> bool:
    properties, patterns = node.get("properties"), node.get("patternProperties")
    if not isinstance(properties, dict) or not isinstance(patterns, dict):
        return False
    for pattern in patterns:
        try:
            if any(re.search(pattern, name) for name in properties):
                return True
        except (re.error, TypeError, RecursionError):
            return True  # unknown: assume it does
    return False


def _walk(
    root: dict[str, Any], max_depth: int, too_deep: Callable[[], Exception]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object in the schema document with its JSON pointer, iteratively."""
    stack: list[tuple[str, Any, int]] = [("#", root, 0)]
    while stack:
        pointer, node, depth = stack.pop()
        if depth > max_depth:
            raise too_deep()
        if isinstance(node, dict):
            yield pointer, node
            items: Any = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        for key, child in items:
            if isinstance(child, dict | list):
                stack.append((f"{pointer}/{_escape(str(key))}", child, depth + 1))


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _check_metaschema(spec: ConstraintSpec, schema: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator, SchemaError, validators

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unknown $schema falls back to the latest draft
        validator = validators.validator_for(schema, default=Draft202012Validator)
    try:
        validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise _fail(
            spec, f"not a valid JSON Schema: {exc.message}" + (f" (at #/{where})" if where else "")
        ) from None
    except RecursionError:
        raise BeyondLimits("the JSON schema nests too deep to check", param=spec.param) from None


def _check_counts(spec: ConstraintSpec, pointer: str, node: dict[str, Any], limits: Limits) -> None:
    for keyword in COUNT_KEYWORDS:
        count = node.get(keyword)
        if isinstance(count, int) and count > limits.max_repetition:
            raise BeyondLimits(
                f"{keyword!r} of {count} at {pointer} is above this server's limit of "
                f"{limits.max_repetition}",
                param=spec.param,
            )
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        depth, count = regex_shape(pattern)
        if count > limits.max_repetition or depth > limits.max_nesting:
            raise BeyondLimits(
                f"the 'pattern' at {pointer} repeats or nests beyond the limits", param=spec.param
            )


def _resolve(spec: ConstraintSpec, schema: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        if any(node.get("$id") == ref for _, node in _walk(schema, 10_000, Exception)):
            return None
        raise _fail(spec, f"$ref {ref!r} points outside the schema; only local references work")
    node: Any = schema
    for raw in ref[2:].split("/") if ref != "#" else ():
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _fail(spec, f"$ref {ref!r} points to nothing in the schema")
    return node


def _check_ref_graph(
    spec: ConstraintSpec,
    schema: dict[str, Any],
    nodes: list[tuple[str, dict[str, Any]]],
    targets: dict[str, Any],
    limits: Limits,
) -> None:
    """Refuse ``$ref`` cycles that never consume text, and chains deeper than the limit."""
    in_place: dict[str, list[str]] = {}
    inside: dict[str, list[str]] = {}  # pointer -> refs anywhere below it
    for pointer, node in nodes:
        edges = [f"{pointer}/{k}/{i}" for k in _IN_PLACE for i in range(_len(node.get(k)))]
        edges += [f"{pointer}/{k}" for k in _IN_PLACE_ONE if isinstance(node.get(k), dict)]
        ref = node.get("$ref")
        if isinstance(ref, str) and ref in targets:
            edges.append(ref)
            for prefix in _prefixes(pointer):
                inside.setdefault(prefix, []).append(ref)
        in_place[pointer] = edges
    if cycle := _find_cycle(in_place):
        raise _fail(spec, f"$ref {cycle!r} refers back to itself without consuming any text")
    depth = _longest_chain(inside, list(targets))
    if depth > limits.max_ref_depth:
        raise BeyondLimits(
            f"the schema chains $ref {depth} deep; the limit is {limits.max_ref_depth}",
            param=spec.param,
        )


def _len(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


def _prefixes(pointer: str) -> Iterator[str]:
    parts = pointer.split("/")
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def _find_cycle(graph: dict[str, list[str]]) -> str | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in graph:
        if state.get(start):
            continue
        stack = [(start, iter(graph.get(start, ())))]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                return child
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(graph.get(child, ()))))
    return None


def _longest_chain(inside: dict[str, list[str]], roots: list[str]) -> int:
    """Longest chain of refs, each found inside the previous one's target (back edges, i.e.
    recursion that consumes text, end a chain)."""
    best: dict[str, int] = {}
    for root in roots:
        if root in best:
            continue
        on_path = {root}
        stack = [(root, iter(inside.get(root, ())))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                best[node] = 1 + max(
                    (best.get(c, 0) for c in inside.get(node, ()) if c not in on_path), default=0
                )
                on_path.discard(node)
                stack.pop()
            elif child not in best and child not in on_path:
                on_path.add(child)
                stack.append((child, iter(inside.get(child, ()))))
    return max(best.values(), default=0)


_CHECKS: dict[str, Callable[[ConstraintSpec, Limits], None]] = {
    "json_schema": _check_schema_spec,
    "json_object": _check_json_object,
    "regex": _check_regex_spec,
    "choice": _check_choice,
    "grammar": _check_grammar,
}
