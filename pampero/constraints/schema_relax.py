"""OpenAI's non-strict semantics: a schema no backend can enforce whole is followed as well as
possible, and checked whole after generation.

Only ``strict: true`` limits a schema to what can be enforced exactly. Without it, the compiler
asks ``relax`` for a looser schema that drops what the backends refused, in up to four steps,
each taken only when the one before still cannot be compiled:

0. counts past the server's ``Limits`` alone (``maxLength: 131072``, where a JSON body is
   capped at 128 KiB), which every later step drops too;
1. keywords that check values rather than shape the text (``uniqueItems``, ``not``,
   ``contains``, ``if``/``then``/``else``, ``dependentRequired``/``dependentSchemas``,
   ``propertyNames``, ``multipleOf``, ``unevaluated*``, ``min``/``maxProperties``), and an
   overlapping ``oneOf`` read as ``anyOf``;
2. also string ``pattern``\\ s, ``patternProperties`` and ``format`` (regexes a backend cannot
   compile): first only the patterns no backend can take (``keep_pattern``: lookarounds,
   backreferences, ...), then all of them with the formats. A dropped pattern leaves the
   length bound it implied (``regex_length``: ``^(?=.*\\d)[a-z0-9]{4,8}$`` becomes
   ``minLength: 4, maxLength: 8``), so a string that was bounded stays bounded instead of
   running to ``max_tokens``;
3. the JSON type at the top alone (any JSON of that type; a top-level ``$ref`` is followed
   to find it).

A schema the server refuses to compile whole for its size rather than its keywords (nesting or
``$ref`` chains past the limits, a compile out of CPU time) goes through the same steps, and
step 3 compiles in milliseconds whatever the schema was.

Everything dropped is listed (``Relaxed.dropped``), and ``pampero.constraints.postcheck``
validates the output against the full schema when generation ends.

Example::

    relax({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, 1)
    # Relaxed(schema={"type": "array", "items": {"type": "integer"}}, dropped=("uniqueItems",))
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pampero.constraints.regex_length import anchored_length
from pampero.constraints.schema_walk import with_children
from pampero.constraints.validation import COUNT_KEYWORDS, DEFAULT_LIMITS, Limits

LEVELS = (0, 1, 2, 3)
_VALUE_CHECKS = frozenset(
    {
        "uniqueItems",
        "not",
        "contains",
        "minContains",
        "maxContains",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "propertyNames",
        "multipleOf",
        "unevaluatedItems",
        "unevaluatedProperties",
        "minProperties",
        "maxProperties",
    }
)
# Formats stay at step 1: guidance enforces the ones it knows and drops the rest itself.
_PATTERNS = frozenset({"pattern", "patternProperties", "format"})


@dataclass(frozen=True)
class Relaxed:
    schema: Any
    dropped: tuple[str, ...]  # keyword names, sorted; "oneOf" when read as anyOf


def relax(
    schema: Any,
    level: int,
    limits: Limits = DEFAULT_LIMITS,
    keep_pattern: Callable[[str], bool] | None = None,
) -> Relaxed:
    """``schema`` without what step ``level`` (0-3) drops, and the keywords dropped. Given
    ``keep_pattern``, step 2 drops only the patterns (and ``patternProperties`` entries) it
    rejects, and keeps formats: a milder step 2 for when some backend can take the rest."""
    if level >= 3:
        return Relaxed(_top_type(schema), ("schema beyond its top-level type",))
    drop = frozenset() if level < 1 else _VALUE_CHECKS | (_PATTERNS if level >= 2 else frozenset())
    dropped: set[str] = set()

    def rebuild(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        out = with_children(node, rebuild)
        for key in drop & out.keys():
            if _drop(out, key, limits, keep_pattern):
                dropped.add(key)
        for key in COUNT_KEYWORDS:
            count = out.get(key)
            if isinstance(count, int) and count > limits.max_repetition:
                dropped.add(key)
                del out[key]
        if "oneOf" in out and level >= 1:
            dropped.add("oneOf")
            out["anyOf"] = out.pop("oneOf")
        return out

    # A copy first: ``_with_ref_targets`` writes into parts that ``rebuild`` did not copy.
    document = _with_ref_targets(rebuild(copy.deepcopy(schema)), rebuild)
    return Relaxed(document, tuple(sorted(dropped)))


def _drop(
    node: dict[str, Any], key: str, limits: Limits, keep: Callable[[str], bool] | None
) -> bool:
    """Drop ``key`` from ``node`` (or, with ``keep``, what ``keep`` rejects of it); whether
    anything was dropped."""
    value = node[key]
    if key == "format" and (not isinstance(value, str) or keep is not None):
        return False  # a property named "format" lives under "properties", not here
    if key == "patternProperties" and keep is not None and isinstance(value, dict):
        kept = {pattern: sub for pattern, sub in value.items() if keep(pattern)}
        if len(kept) == len(value):
            return False
        if kept:
            node[key] = kept
        else:
            del node[key]
        return True
    if key == "pattern" and isinstance(value, str):
        if keep is not None and keep(value):
            return False
        _keep_length(node, value, limits)
    del node[key]
    return True


def _with_ref_targets(document: Any, rebuild: Callable[[Any], Any]) -> Any:
    """``document`` with every local ``$ref`` target rebuilt too: definitions may live under
    any key (``{"$ref": "#/bolts"}`` beside a top-level ``"bolts": {...}``), where a walk by
    keyword does not go. Rebuilding is idempotent, so targets already rebuilt stay as they
    are."""
    done: set[str] = set()
    while True:
        pending = sorted(_local_refs(document) - done)
        if not pending:
            return document
        for ref in pending:
            done.add(ref)
            parts = [raw.replace("~1", "/").replace("~0", "~") for raw in ref[2:].split("/")]
            if parts == [""]:
                continue  # "#/" is the root, rebuilt already
            parent = _pointer(document, "#/" + "/".join(ref[2:].split("/")[:-1]))
            key: Any = parts[-1]
            if isinstance(parent, list) and key.isdigit() and int(key) < len(parent):
                key = int(key)
            elif not isinstance(parent, dict) or key not in parent:
                continue
            if isinstance(parent[key], dict):
                parent[key] = rebuild(parent[key])


def _local_refs(document: Any) -> set[str]:
    refs: set[str] = set()
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/"):
                refs.add(ref)
            stack.extend(v for k, v in node.items() if k not in _DATA and isinstance(v, Container))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, Container))
    return refs


_DATA = frozenset({"enum", "const", "default", "examples"})
Container = (dict, list)


def _keep_length(node: dict[str, Any], pattern: str, limits: Limits) -> None:
    """Tighten ``node``'s min/maxLength to the lengths ``pattern`` allows (if it bounds them)."""
    length = anchored_length(pattern)
    if length is None:
        return
    low, high = length
    if 0 < low <= limits.max_repetition:
        node["minLength"] = max(low, _count(node.get("minLength"), 0))
    if high is not None and high <= limits.max_repetition:
        node["maxLength"] = min(high, _count(node.get("maxLength"), high))


def _count(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _top_type(schema: Any) -> dict[str, Any]:
    node, seen = schema, 0
    while isinstance(node, dict) and "type" not in node and seen < _REF_STEPS:
        ref = node.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            break
        node, seen = _pointer(schema, ref), seen + 1
    if isinstance(node, dict) and isinstance(node.get("type"), str | list):
        return {"type": node["type"]}
    return {}


_REF_STEPS = 8


def _pointer(root: Any, ref: str) -> Any:
    node = root
    for raw in ref[2:].split("/") if ref != "#/" else ():
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part == "oneOf" and "anyOf" in node and part not in node:
            node = node["anyOf"]  # read as anyOf by step 1
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
