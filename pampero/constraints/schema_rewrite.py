"""Exact rewrites of JSON Schema keywords that backends lack into ones they enforce.

Every rewrite keeps the set of valid documents exactly the same (one, said below, may narrow
it, never widen it); a keyword that cannot be
rewritten exactly is left as it is, for each backend to enforce or refuse (never to drop).

- ``oneOf`` whose branches are provably disjoint (no document can match two of them) becomes
  ``anyOf``, which then means the same. Disjoint: by JSON type, by ``const``/``enum`` values, by a
  property every branch requires whose ``const``/``enum`` values differ (a discriminator), by
  a property one branch requires and the other forbids (``additionalProperties: false``), or
  by any ``allOf`` item of one branch being disjoint from the other.
  Local ``$ref``s are followed. That is how schemas use ``oneOf`` almost always.
- A ``type`` beside a ``$ref``, ``anyOf`` or ``oneOf`` that already keeps documents to that
  type (or a narrower one: the target declares it, every branch does) says nothing more: it is
  dropped. That lets guidance compile recursive definitions that carry one, which it would
  otherwise have to intersect while still defining them.
- With ``clauses=True``, for a backend that intersects ``allOf`` clauses and sibling keywords
  exactly and reads ``false`` as "absent" (guidance; the contract tests show the others let
  invalid objects through, so they refuse such schemas):

  - ``dependentRequired`` / ``dependentSchemas`` (and draft 7's ``dependencies``, either form):
    "if A is present, the object also needs B / matches S" becomes, in ``allOf``, the clause
    ``anyOf: [{properties: {A: false}}, {required: [A, B...]} (with S's keywords)]``;
  - ``{"not": {}}`` (or ``{"not": true}``), which nothing matches, is ``false`` (which a
    draft-04 schema cannot say: these rewrites come after validation);
  - a ``oneOf`` of groups of required properties (``[{required: [length, width]},
    {required: [radius]}]``) becomes an ``anyOf`` of objects that have one group and lack a
    property of every other group. A branch may say more than ``required`` about its object
    (``type``, ``properties``, ``additionalProperties``, ...: keywords that never make a
    property present): it keeps that. This one rewrite may then narrow rather than keep: a
    document with every property of two groups that fails the rest of one branch matches
    exactly one branch, and is no longer offered. Every document it offers still matches
    exactly one branch.

- ``without_formats``: drops the ``format`` values a backend does not know. ``format`` is an
  annotation in Draft 2020-12 unless a validator opts in, the other backends ignore every
  format, and validators ignore formats they do not know; guidance, which enforces the formats
  it knows, refuses the rest instead.

The compiler applies the ``oneOf`` rewrite to every JSON schema before choosing a backend.

Example::

    rewrite({"oneOf": [{"type": "string"}, {"type": "null"}]})
    # {"anyOf": [{"type": "string"}, {"type": "null"}]}
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from typing import Any

from pampero.constraints.base import ConstraintSpec
from pampero.constraints.schema_walk import with_children

MAX_DEPTH = 128  # no rewriting deeper than this (validation refuses deeper nesting anyway)
REF_HOPS = 16  # $ref hops followed when deciding disjointness
MAX_DEPENDENCIES = 16  # per object; more are left for the backend to refuse
MAX_BRANCHES = 64  # oneOf branches compared pairwise; longer lists are left as they are
_ANNOTATIONS = ("description", "title", "$comment", "examples", "default", "$schema", "$id")
# What a required-group ``oneOf`` branch may say beside ``required``: none can make a property
# present, so lacking one of another group's properties never makes the branch impossible.
_BESIDE_GROUP = frozenset(
    {"required", "type", "properties", "additionalProperties", "patternProperties",
     "propertyNames", "maxProperties", *_ANNOTATIONS}
)  # fmt: skip


def rewrite_spec(spec: ConstraintSpec, *, clauses: bool = False) -> ConstraintSpec:
    """``spec`` with its JSON schema rewritten, or ``spec`` itself when nothing changes (or
    the schema does not parse: validation then says why)."""
    if spec.kind != "json_schema" or not isinstance(spec.value, str):
        return spec
    try:
        schema = json.loads(spec.value)
    except (ValueError, RecursionError):
        return spec
    rewriter = _Rewriter(schema, clauses)
    rewritten = rewriter.node(schema, 0)
    if not rewriter.changed:
        return spec
    return dataclasses.replace(spec, value=json.dumps(rewritten))


def rewrite(schema: Any, *, clauses: bool = False) -> Any:
    """A copy of ``schema`` with the exact rewrites applied."""
    return _Rewriter(schema, clauses).node(schema, 0)


def without_formats(schema_text: str, formats: frozenset[str]) -> str:
    """``schema_text`` with every ``"format"`` whose value is in ``formats`` removed."""
    schema = json.loads(schema_text)
    return json.dumps(_Rewriter(schema, False, formats).node(schema, 0))


class _Rewriter:
    def __init__(
        self, root: Any, clauses: bool, drop_formats: frozenset[str] = frozenset()
    ) -> None:
        self.root = root
        self.clauses = clauses
        self.drop_formats = drop_formats
        self.changed = False

    def node(self, schema: Any, depth: int) -> Any:  # a schema, or False for "nothing"
        if not isinstance(schema, dict) or depth > MAX_DEPTH:
            return schema
        out = with_children(schema, lambda child: self.node(child, depth + 1))
        if "type" in out and self._implied_type(out):
            del out["type"]
            self.changed = True
        if out.get("format") in self.drop_formats:
            del out["format"]
        if self.clauses and "not" in out and (out["not"] is True or out["not"] == {}):
            self.changed = True
            return False
        self._one_of(out)
        if self.clauses:
            self._dependencies(out)
            self._pattern_duplicates(out)
        return out

    def _implied_type(self, node: dict[str, Any]) -> bool:
        """The ``type`` beside a ``$ref``, ``anyOf`` or ``oneOf`` that already keeps every
        document to that type (or a narrower one) says nothing more."""
        if not any(key in node for key in ("$ref", "anyOf", "oneOf")):
            return False
        beside = _type_names(node["type"])
        if not beside or ("integer" in beside and _NUMBER not in beside):
            return False  # "integer" is narrower than the "number" _kinds reports
        rest = {k: v for k, v in node.items() if k != "type"}
        implied = _kinds(rest, self.root)
        return implied is not None and implied <= beside

    def _one_of(self, node: dict[str, Any]) -> None:
        branches = node.get("oneOf")
        if not isinstance(branches, list) or len(branches) > MAX_BRANCHES or "anyOf" in node:
            return
        context = _kinds({k: v for k, v in node.items() if k != "oneOf"}, self.root)
        pairs = itertools.combinations(branches, 2)
        if all(_disjoint(a, b, self.root, context) for a, b in pairs):
            node["anyOf"] = node.pop("oneOf")
            self.changed = True
        elif self.clauses and (groups := _required_groups(branches)) is not None:
            del node["oneOf"]
            node["anyOf"] = [_only_group(i, groups, b) for i, b in enumerate(branches)]
            self.changed = True

    def _dependencies(self, node: dict[str, Any]) -> None:
        found: dict[str, Any] = {}
        for key in ("dependentRequired", "dependentSchemas", "dependencies"):
            value = node.get(key)
            if not isinstance(value, dict):
                continue
            if any(not _dependency_ok(key, v) for v in value.values()):
                return
            found.update({f"{key}\0{name}": v for name, v in value.items()})
        if not found or len(found) > MAX_DEPENDENCIES:
            return
        required = _list(node.get("required"))
        clauses = []
        for tagged, then in found.items():
            name = tagged.split("\0", 1)[1]
            clauses.append(_dependency_clause(name, then, name in required))
        for key in ("dependentRequired", "dependentSchemas", "dependencies"):
            node.pop(key, None)
        node["allOf"] = [*_list(node.get("allOf")), *clauses]
        self.changed = True

    def _pattern_duplicates(self, node: dict[str, Any]) -> None:
        """A property whose schema repeats that of a ``patternProperties`` entry matching its
        name must match both, which is matching one: its own schema becomes ``{}``."""
        properties, patterns = node.get("properties"), node.get("patternProperties")
        if not isinstance(properties, dict) or not isinstance(patterns, dict):
            return
        for name, schema in properties.items():
            if schema == {} or not isinstance(schema, dict):
                continue
            own = _without_annotations(schema)
            for pattern, other in patterns.items():
                duplicate = isinstance(other, dict) and _without_annotations(other) == own
                if duplicate and _matches(pattern, name):
                    properties[name] = {}
                    self.changed = True
                    break


def _without_annotations(schema: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in schema.items() if k not in _ANNOTATIONS}, sort_keys=True)


def _matches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except (re.error, RecursionError):
        return False


def _required_groups(branches: list[Any]) -> list[list[str]] | None:
    """The property groups of a ``oneOf`` whose branches say ``required`` and otherwise only
    what cannot make a property present (``_BESIDE_GROUP``): at least two, none empty, none
    inside another (else the rewrite would hold impossible branches)."""
    if len(branches) < 2 or not all(
        isinstance(b, dict) and "required" in b and set(b) <= _BESIDE_GROUP and _required(b)
        for b in branches
    ):
        return None
    if any(b.get("type", "object") != "object" for b in branches):
        return None
    groups = [_required(b) for b in branches]
    for a, b in itertools.permutations(groups, 2):
        if set(a) <= set(b):
            return None
    return groups


def _only_group(i: int, groups: list[list[str]], branch: dict[str, Any]) -> dict[str, Any]:
    """Branch ``i``, an object with group ``i`` that lacks at least one property of every
    other group (a non-object matches every ``required``-only branch, so none of them)."""
    others = [
        {"anyOf": [{"properties": {name: False}} for name in group if name not in groups[i]]}
        for j, group in enumerate(groups)
        if j != i
    ]
    return {**branch, "type": "object", "required": groups[i], "allOf": others}


def _type_names(value: Any) -> set[str]:
    names = [value] if isinstance(value, str) else value
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return set(names)
    return set()


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dependency_ok(key: str, value: Any) -> bool:
    names = isinstance(value, list) and all(isinstance(v, str) for v in value)
    schema = isinstance(value, (dict, bool))
    if key == "dependentRequired":
        return names
    if key == "dependentSchemas":
        return schema
    return names or schema


def _dependency_clause(name: str, then: Any, always_present: bool) -> dict[str, Any]:
    """ "If ``name`` is present, ``then`` (property names, or a schema) holds", exactly."""
    absent = {"properties": {name: False}}
    if then is False:
        return absent
    if isinstance(then, list):
        present: dict[str, Any] = {"required": [name, *then]}
    else:
        sub = then if isinstance(then, dict) else {}
        present = {**sub, "required": [name, *_list(sub.get("required"))]}
    if always_present:
        return present
    return {"anyOf": [absent, present]}


# -- disjointness --------------------------------------------------------------------------------

_NUMBER = "number"  # integer counts as number: they overlap


def _resolve(schema: Any, root: Any) -> Any:
    """``schema`` with local ``$ref``s followed (when ``$ref`` is its only constraint)."""
    for _ in range(REF_HOPS):
        if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
            return schema
        if set(schema) - {"$ref", "description", "title", "$comment", "default", "examples"}:
            return None  # $ref beside other keywords: an intersection this does not compute
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return None
        target: Any = root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                return None
        schema = target
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return _NUMBER
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _value_key(value: Any) -> str:
    """Equal keys for values JSON Schema calls equal (1 and 1.0 are; true and 1 are not)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"n:{float(value)!r}"
    return "v:" + json.dumps(value, sort_keys=True)


def _values(schema: Any) -> set[str] | None:
    """The finite set of values ``schema`` allows (by ``const``/``enum``), or None."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return {_value_key(schema["const"])}
    if isinstance(schema.get("enum"), list):
        return {_value_key(v) for v in schema["enum"]}
    return None


def _kinds(schema: Any, root: Any, depth: int = 0) -> set[str] | None:
    """The JSON types ``schema`` can match, or None when that is not known."""
    schema = _resolve(schema, root)
    if schema is False:
        return set()
    if not isinstance(schema, dict) or depth > REF_HOPS:
        return None
    found: set[str] | None = None
    declared = schema.get("type")
    if isinstance(declared, str):
        declared = [declared]
    if isinstance(declared, list) and all(isinstance(t, str) for t in declared):
        found = {_NUMBER if t == "integer" else t for t in declared}
    values = schema.get("enum") if "const" not in schema else [schema["const"]]
    if isinstance(values, list):
        typed = {_json_type(v) for v in values}
        found = typed if found is None else found & typed
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if found is None and isinstance(branches, list):
            kinds = [_kinds(b, root, depth + 1) for b in branches]
            if all(k is not None for k in kinds):
                found = set().union(*kinds)  # type: ignore[arg-type]
    return found


def _disjoint(a: Any, b: Any, root: Any, context: set[str] | None = None, depth: int = 0) -> bool:
    """True when no document of the ``context`` types (the schema around the ``oneOf``; None:
    any) can match both ``a`` and ``b``. False when that is not proven."""
    for one, other in ((a, b), (b, a)):
        parts = _resolve(one, root)
        parts = parts.get("allOf") if isinstance(parts, dict) else None
        if not isinstance(parts, list) or len(parts) > MAX_BRANCHES or depth >= REF_HOPS:
            continue
        if any(_disjoint(part, other, root, context, depth + 1) for part in parts):
            return True
    ka, kb = _kinds(a, root), _kinds(b, root)
    if context is not None:
        ka = context if ka is None else ka & context
        kb = context if kb is None else kb & context
    if ka is not None and kb is not None and not ka & kb:
        return True
    ra, rb = _resolve(a, root), _resolve(b, root)
    va, vb = _values(ra), _values(rb)
    if va is not None and vb is not None and not va & vb:
        return True
    return {"object"} in (ka, kb) and _discriminated(ra, rb, root)


def _discriminated(a: Any, b: Any, root: Any) -> bool:
    """Both require a property whose allowed values do not overlap (which, for objects, no
    document can satisfy both ways)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    if any(_forbids(b, n) for n in _required(a)) or any(_forbids(a, n) for n in _required(b)):
        return True
    shared = set(_required(a)) & set(_required(b))
    for name in shared:
        va = _values(_resolve(_property(a, name), root))
        vb = _values(_resolve(_property(b, name), root))
        if va is not None and vb is not None and not va & vb:
            return True
    return False


def _forbids(schema: dict[str, Any], name: str) -> bool:
    """An object ``schema`` matches cannot have property ``name``."""
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    if name in properties:
        return properties[name] is False
    if schema.get("additionalProperties") is not False:
        return False
    patterns = schema.get("patternProperties")
    if not isinstance(patterns, dict):
        return True
    try:
        return not any(re.search(p, name) for p in patterns)
    except (re.error, RecursionError):
        return False


def _required(schema: dict[str, Any]) -> list[str]:
    names = schema.get("required")
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _property(schema: dict[str, Any], name: str) -> Any:
    properties = schema.get("properties")
    return properties.get(name) if isinstance(properties, dict) else None
