"""Objects that list their properties get no others unless the schema asks for them.

JSON Schema lets an object carry properties it does not list unless ``additionalProperties``
says otherwise. A decoder that offers them lets a small model wander into a made-up key that
never closes (``"width': 7.5  // This is a floating-point number...`` until ``max_tokens``).
xgrammar (vLLM's default backend) generates no unlisted property unless the schema allows them
explicitly, and OpenAI's strict mode requires ``additionalProperties: false`` on every object;
``closed`` gives guidance the same reading. An explicit ``additionalProperties`` (``true``,
``{}`` or a schema) is kept as it is.

Closing only narrows what may be generated; every output still matches the schema. It is done
only where it cannot make an object impossible or change what another keyword means:

- the object lists ``properties``, says nothing of ``additionalProperties``,
  ``unevaluatedProperties``, ``patternProperties`` or ``propertyNames``, is not beside a
  ``$ref``, and every name it or its ``allOf``/``anyOf``/``oneOf``/``not``/``if``/dependencies
  mention (``required``, ``properties`` but those whose schema is ``false``, dependencies) is
  listed or one it requires itself (so no branch wants another property; a name it requires
  without listing is listed as ``{}``), and ``minProperties`` is within reach;
- the schema applies to its value alone: not an ``allOf`` clause, not under a ``oneOf``
  (closing a branch can make a document that matched two branches match one), not an
  ``anyOf`` branch beside other keywords, not a property a pattern also matches, not a
  definition that some ``$ref`` uses in such a place.

Example::

    closed({"type": "object", "properties": {"a": {"type": "integer"}}})
    # {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false}
"""

from __future__ import annotations

import re
from typing import Any

_CONTAINERS = ("definitions", "$defs")
_ANNOTATIONS = frozenset(
    {"description", "title", "$comment", "examples", "default", "$schema", "$id", "readOnly",
     "writeOnly", "deprecated", "format"}
)  # fmt: skip
# Keywords beside which an object stays as it is: they say which other properties it may have.
_OPENING = frozenset(
    {"$ref", "unevaluatedProperties", "additionalProperties", "patternProperties", "propertyNames"}
)
_APPLICATORS = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else")
_DEF_REF = re.compile(r"^#/(definitions|\$defs)/([^/]+)$")
# A ``oneOf`` branch is never closed: a narrower branch can widen a ``oneOf`` (a document
# that matched two branches, and so none, matches one once the other is closed).
# ``schema_rewrite`` has already made every provably disjoint ``oneOf`` an ``anyOf``.
_NEVER_ALONE = ("allOf", "oneOf", "not", "if", "then", "else", "contains", "propertyNames",
                "unevaluatedItems", "unevaluatedProperties")  # fmt: skip


class _Unsure(Exception):
    """A reference this module does not follow: nothing is closed."""


def closed(schema: Any) -> Any:
    """A copy of ``schema`` with the objects described above closed (or ``schema`` itself
    when a reference it does not follow leaves that unsure)."""
    if not isinstance(schema, dict):
        return schema
    try:
        alone = _alone_definitions(schema)
        return _Closer(alone).node(schema, "#" in alone, top=True)
    except (_Unsure, RecursionError):
        return schema


def _definitions(root: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for container in _CONTAINERS:
        if isinstance(root.get(container), dict):
            for name, body in root[container].items():
                escaped = name.replace("~", "~0").replace("/", "~1")
                found[f"#/{container}/{escaped}"] = body
    return found


def _alone_definitions(root: dict[str, Any]) -> set[str]:
    """The references (``#`` and definitions) whose every use applies the target alone."""
    definitions = _definitions(root)
    alone = {"#", *definitions}
    while True:
        used_otherwise: set[str] = set()
        _Closer(alone, used_otherwise).node(root, "#" in alone, top=True)
        if not used_otherwise & alone:
            return alone
        alone -= used_otherwise


class _Closer:
    def __init__(self, alone: set[str], used_otherwise: set[str] | None = None) -> None:
        self.alone = alone
        self.used_otherwise = used_otherwise  # recording pass: nothing is changed

    def node(self, schema: Any, alone: bool, top: bool = False) -> Any:
        if not isinstance(schema, dict):
            return schema
        self._reference(schema, alone)
        out = dict(schema)
        constraints = set(out) - _ANNOTATIONS - set(_CONTAINERS)
        self._object_parts(out, alone)
        self._array_parts(out, alone and "contains" not in out)
        # the branches are all it says (but for the type they share)
        branches_alone = alone and len(constraints - {"type"}) == 1
        out["anyOf"] = self._each(out.get("anyOf"), branches_alone)
        for key in _NEVER_ALONE:
            out[key] = self._each(out.get(key), False)
        for key in ("dependentSchemas", "dependencies"):
            if isinstance(out.get(key), dict):
                out[key] = {n: self.node(v, False) for n, v in out[key].items()}
        for container in _CONTAINERS if top else ():
            if isinstance(out.get(container), dict):
                out[container] = {
                    name: self.node(body, f"#/{container}/{_escape(name)}" in self.alone)
                    for name, body in out[container].items()
                }
        out = {k: v for k, v in out.items() if k in schema}
        if alone and self.used_otherwise is None and _closable(out, constraints):
            listed = out["properties"]
            unlisted: dict[str, Any] = {n: {} for n in _own_required(out) if n not in listed}
            out["properties"] = {**listed, **unlisted}
            out["additionalProperties"] = False
        return out

    def _each(self, value: Any, alone: bool) -> Any:
        if isinstance(value, dict):
            return self.node(value, alone)
        if isinstance(value, list):
            return [self.node(v, alone) for v in value]
        return value

    def _object_parts(self, out: dict[str, Any], alone: bool) -> None:
        properties: dict[str, Any] = _map(out.get("properties"))
        patterns: dict[str, Any] = _map(out.get("patternProperties"))
        matched = {n for n in properties if any(_matches(p, n) for p in patterns)}
        if properties:
            out["properties"] = {
                n: self.node(v, alone and n not in matched) for n, v in properties.items()
            }
        if patterns:
            single = len(patterns) == 1 and not matched
            out["patternProperties"] = {
                p: self.node(v, alone and single) for p, v in patterns.items()
            }
        if isinstance(out.get("additionalProperties"), dict):
            out["additionalProperties"] = self.node(out["additionalProperties"], alone)

    def _array_parts(self, out: dict[str, Any], alone: bool) -> None:
        for key in ("items", "prefixItems", "additionalItems"):
            out[key] = self._each(out.get(key), alone)

    def _reference(self, schema: dict[str, Any], alone: bool) -> None:
        ref = schema.get("$ref")
        if ref is None or self.used_otherwise is None:
            return
        if not isinstance(ref, str) or (ref != "#" and not _DEF_REF.match(ref)):
            raise _Unsure(ref)
        beside = set(schema) - _ANNOTATIONS - {"$ref"} - set(_CONTAINERS)
        if not alone or beside:
            self.used_otherwise.add(ref)


def _closable(node: dict[str, Any], constraints: set[str]) -> bool:
    properties = node.get("properties")
    if not isinstance(properties, dict) or not properties or constraints & _OPENING:
        return False
    listed = set(properties) | set(_own_required(node))  # a required name is listed as {}
    least = node.get("minProperties")
    if isinstance(least, int) and least > len(listed):
        return False
    named = _names(node)
    return named is not None and named <= listed


def _own_required(node: dict[str, Any]) -> list[str]:
    return [n for n in _list(node.get("required")) if isinstance(n, str)]


def _names(node: Any) -> set[str] | None:
    """The property names ``node`` and its in-place applicators mention (``required``,
    ``properties``, dependencies), or None when one holds a ``$ref`` or patterns."""
    if not isinstance(node, dict):
        return set()
    if "$ref" in node or "patternProperties" in node:
        return None
    found = set(_own_required(node))
    # a name whose schema is false is absent, as closing keeps it
    found |= {n for n, v in _map(node.get("properties")).items() if v is not False}
    for key in ("dependentRequired", "dependencies", "dependentSchemas"):
        for name, then in _map(node.get(key)).items():
            found.add(name)
            found |= {n for n in _list(then) if isinstance(n, str)}
            inner = _names(then) if isinstance(then, dict) else set()
            if inner is None:
                return None
            found |= inner
    for key in _APPLICATORS:
        value = node.get(key)
        for part in value if isinstance(value, list) else [value] if value is not None else []:
            inner = _names(part)
            if inner is None:
                return None
            found |= inner
    return found


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _matches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except (re.error, RecursionError, TypeError):
        return True  # unknown: assume it does


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
