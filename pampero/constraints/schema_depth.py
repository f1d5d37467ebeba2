"""Recursive definitions get a depth: a small model nests them until ``max_tokens`` otherwise.

A schema whose definitions refer to themselves (a content item whose ``links`` hold content
items, a tree node whose ``children`` are nodes) lets a decoder nest without end, and a 0.5B
model does: it copies the level above until the token budget runs out, so the answer is cut and
invalid. Where every cycle can stop (the recursive property is optional, the array may be empty,
another branch exists), ``bounded_recursion`` unrolls each recursive definition into one copy per
level, up to ``depth`` levels (in references followed: ``depth`` for each definition of the
cycle, so a section whose body is a list of sections nests ``depth`` sections deep), and the
deepest copy leaves the recursion out: an optional
property is absent (``{"not": {}}``), an array is empty (``maxItems: 0``), a branch is dropped,
and an open object whose pattern properties recur is left out as a whole (where it is optional).

Every document the bounded schema accepts, the original accepts: it only narrows, like
``schema_close``. It is left as it is (unchanged) where that cannot be shown: a reference this
module does not resolve, a recursion reached under ``not``, ``if`` or ``oneOf`` (where a
narrower subschema could widen the whole), ``unevaluated*``, dynamic references, a recursion
that cannot stop (a required recursive property), or an unrolled schema past a size budget.

Example::

    tree = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}}
    bounded_recursion(tree, 2)
    # the root's kids are level-2 nodes (kept in $defs), whose kids arrays must be empty
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from pampero.constraints.base import ConstraintSpec
from pampero.constraints.schema_walk import CONTAINERS, SUBSCHEMA, SUBSCHEMA_LISTS, SUBSCHEMA_MAPS

DEFAULT_DEPTH = 4  # levels: a tree node, its children, theirs and theirs
ROOT = "#"
NOTHING: dict[str, Any] = {"not": {}}  # no value matches (draft-04 has no ``false`` schema)
MAX_UNROLLED_CHARS = 400_000  # the copies' JSON text, all levels together
_REF = re.compile(r"^#(?:/(definitions|\$defs)/([^/]+))?$")
_NOT_MONOTONE = ("not", "if", "oneOf")  # a narrower subschema here may accept more
_REFUSED = ("unevaluatedProperties", "unevaluatedItems", "$recursiveRef", "$dynamicRef",
            "$anchor", "$dynamicAnchor", "$recursiveAnchor")  # fmt: skip


class _Unsure(Exception):
    """Something this module does not follow: the schema stays as it is."""


class _Nothing:
    """A subschema nothing matches (the recursion cut at the deepest level)."""


FALSE = _Nothing()


def bounded_spec(spec: ConstraintSpec, depth: int) -> ConstraintSpec:
    """``spec`` with its JSON schema's recursion bounded to ``depth`` levels (0: unbounded), or
    ``spec`` itself when there is none to bound."""
    if spec.kind != "json_schema" or not isinstance(spec.value, str) or depth < 1:
        return spec
    try:
        schema = json.loads(spec.value)
    except (ValueError, RecursionError):
        return spec
    bounded = bounded_recursion(schema, depth)
    if bounded is schema:
        return spec
    return dataclasses.replace(spec, value=json.dumps(bounded, sort_keys=True))


def bounded_recursion(schema: Any, depth: int) -> Any:
    """A copy of ``schema`` whose recursive definitions nest at most ``depth`` levels, or
    ``schema`` itself when it has none or they cannot be bounded safely."""
    if depth < 1 or not isinstance(schema, dict):
        return schema
    try:
        return _Unroller(schema, depth).run()
    except (_Unsure, RecursionError):
        return schema


def _children(node: dict[str, Any], *, containers: bool) -> Iterator[tuple[str, Any]]:
    """(keyword, subschema) for every subschema ``node`` holds directly."""
    for key in SUBSCHEMA:
        if isinstance(node.get(key), dict):
            yield key, node[key]
    for key in SUBSCHEMA_LISTS:
        if isinstance(node.get(key), list):
            yield from ((key, item) for item in node[key])
    for key in SUBSCHEMA_MAPS + (CONTAINERS if containers else ()):
        if isinstance(node.get(key), dict):
            yield from ((key, value) for value in node[key].values() if isinstance(value, dict))


class _Unroller:
    def __init__(self, root: dict[str, Any], depth: int) -> None:
        self.root = root
        self.depth = depth
        self.nodes: dict[str, dict[str, Any]] = {ROOT: root}
        self.names: dict[str, tuple[str, str]] = {}  # ref -> (container, escaped name)
        for container in CONTAINERS:
            if isinstance(root.get(container), dict):
                for name, body in root[container].items():
                    escaped = name.replace("~", "~0").replace("/", "~1")
                    ref = f"#/{container}/{escaped}"
                    self.names[ref] = (container, name)
                    if isinstance(body, dict):
                        self.nodes[ref] = body

    # -- analysis ---------------------------------------------------------------------------

    def refs(self, node: Any, *, top: bool, negative: bool = False) -> Iterator[tuple[str, bool]]:
        """(ref, whether under not/if/oneOf) for every ``$ref`` in ``node``; a node's own
        definitions are walked only below the root (the root's are nodes of their own)."""
        if not isinstance(node, dict):
            return
        if any(key in node for key in _REFUSED) or (not top and "$id" in node):
            raise _Unsure
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref not in self.nodes:
                raise _Unsure  # remote, a path into a definition, a definition that is not one
            yield ref, negative
        for key, child in _children(node, containers=not top):
            yield from self.refs(child, top=False, negative=negative or key in _NOT_MONOTONE)

    def run(self) -> dict[str, Any]:
        edges: dict[str, set[str]] = {}
        negative: set[str] = set()
        for name, body in self.nodes.items():
            edges[name] = set()
            for ref, under_negative in self.refs(body, top=name == ROOT):
                edges[name].add(ref)
                if under_negative:
                    negative.add(ref)
        components = _strongly_connected(edges)
        recursive = {
            name
            for component in components
            for name in component
            if len(component) > 1 or name in edges[name]
        }
        if not recursive:
            return self.root
        reaching = _reaching(edges, recursive)
        if negative & reaching:
            raise _Unsure
        size = sum(
            len(json.dumps(self.nodes[name])) * self.depth * len(component)
            for component in components
            for name in component
            if name in recursive
        )
        if size > MAX_UNROLLED_CHARS:
            raise _Unsure
        return self._unrolled(components, recursive)

    # -- unrolling --------------------------------------------------------------------------

    def _copy_ref(self, name: str, level: int) -> tuple[str, str, str]:
        """(ref, container, key) of ``name``'s copy at ``level`` (2+ for the root)."""
        if name == ROOT:
            container = next((c for c in CONTAINERS if c in self.root), "$defs")
            key = "root"
        else:
            container, key = self.names[name]
        taken = self.root.get(container, {})
        copy = f"{key}__depth{level}"
        while copy in taken:
            copy += "_"
        escaped = copy.replace("~", "~0").replace("/", "~1")
        return f"#/{container}/{escaped}", container, copy

    def _unrolled(self, components: list[list[str]], recursive: set[str]) -> dict[str, Any]:
        copies: dict[tuple[str, int], Any] = {}  # (node, level) -> body or FALSE
        targets: dict[tuple[str, int], str] = {}
        for component in components:  # successors first (Tarjan's order)
            if recursive & set(component):
                self._levels(component, recursive, copies, targets)

        def outside(ref: str) -> Any:
            return targets[(ref, 1)] if ref in recursive else None

        root = copies[(ROOT, 1)] if ROOT in recursive else _Cut(outside).node(self.root)
        out = dict(root)
        for container in CONTAINERS:
            if isinstance(self.root.get(container), dict):
                out[container] = dict(self.root[container])
        for ref, body in self.nodes.items():
            if ref != ROOT and ref not in recursive:
                container, key = self.names[ref]
                out[container][key] = _Cut(outside).node(body)
        for (name, level), body in copies.items():
            if body is FALSE or (name == ROOT and level == 1):
                continue
            if name == ROOT:
                body = {k: v for k, v in body.items() if k not in (*CONTAINERS, "$schema", "$id")}
            _, container, key = self._copy_ref(name, level)
            out.setdefault(container, {})[key] = body
        return out

    def _levels(
        self,
        component: list[str],
        recursive: set[str],
        copies: dict[tuple[str, int], Any],
        targets: dict[tuple[str, int], str],
    ) -> None:
        """The copies of one cycle's definitions, deepest level first (the cut)."""
        members = set(component)
        deepest = self.depth * len(component)  # levels are references followed
        for level in range(deepest, 0, -1):
            for name in component:
                targets[(name, level)] = self._copy_ref(name, level)[0]

            def resolve(ref: str, level: int = level) -> Any:
                if ref in members:
                    if level == deepest or copies[(ref, level + 1)] is FALSE:
                        return FALSE
                    return targets[(ref, level + 1)]
                return targets[(ref, 1)] if ref in recursive else None

            for name in component:
                copies[(name, level)] = _Cut(resolve).node(self.nodes[name])
        if any(copies[(name, 1)] is FALSE for name in component):
            raise _Unsure  # the recursion cannot stop: leave it to the model


class _Cut:
    """Rewrites ``$ref``s with ``resolve`` (a new ref, FALSE, or None for unchanged) and folds
    FALSE into the nearest place that may be empty or absent."""

    def __init__(self, resolve: Callable[[str], Any]) -> None:
        self.resolve = resolve

    def node(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        out = dict(node)
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = self.resolve(ref)
            if target is FALSE:
                return FALSE
            if target is not None:
                out["$ref"] = target
        folds = (self._singles, self._names, self._items, self._branches, self._properties,
                 self._dependencies)  # fmt: skip
        return out if all(fold(out) for fold in folds) else FALSE

    def _singles(self, out: dict[str, Any]) -> bool:
        for key in ("additionalProperties", "additionalItems"):
            if isinstance(out.get(key), dict):
                sub = self.node(out[key])
                out[key] = False if sub is FALSE else sub
        for key in ("contains", "then", "else"):
            if isinstance(out.get(key), dict):
                sub = self.node(out[key])
                if sub is FALSE and key == "contains":
                    return False
                if sub is FALSE:
                    raise _Unsure
                out[key] = sub
        return True

    def _names(self, out: dict[str, Any]) -> bool:
        if isinstance(out.get("propertyNames"), dict):
            sub = self.node(out["propertyNames"])
            if sub is not FALSE:
                out["propertyNames"] = sub
                return True
            if out.get("required") or out.get("minProperties", 0) > 0:
                return False
            out.pop("propertyNames")
            out["maxProperties"] = 0
        return True

    def _branches(self, out: dict[str, Any]) -> bool:
        for key in ("anyOf", "allOf"):
            if isinstance(out.get(key), list):
                kept = [self.node(item) for item in out[key]]
                if key == "allOf" and any(item is FALSE for item in kept):
                    return False
                out[key] = [item for item in kept if item is not FALSE]
                if not out[key]:
                    return False
        return True

    def _properties(self, out: dict[str, Any]) -> bool:
        required = _required(out)
        open_object = out.get("additionalProperties", True) is not False
        for key in ("properties", "patternProperties"):
            if isinstance(out.get(key), dict):
                mapped = {}
                for name, sub in out[key].items():
                    sub = self.node(sub)
                    if sub is FALSE and key == "properties" and name in required:
                        return False
                    if sub is FALSE and key == "patternProperties" and open_object:
                        # Keys the pattern misses would stay open to any value: a model that
                        # cannot write the key it wants writes a near miss (``"links'"``) and
                        # nests on in there. The whole object goes instead.
                        return False
                    mapped[name] = dict(NOTHING) if sub is FALSE else sub
                out[key] = mapped
        return True

    def _dependencies(self, out: dict[str, Any]) -> bool:
        required = _required(out)
        for key in ("dependencies", "dependentSchemas"):
            if isinstance(out.get(key), dict):
                mapped = {}
                for name, sub in out[key].items():
                    sub = self.node(sub) if isinstance(sub, dict) else sub
                    if sub is not FALSE:
                        mapped[name] = sub
                    elif name in required:
                        return False
                    else:  # the property that would bring it in is absent
                        out["properties"] = {**out.get("properties", {}), name: dict(NOTHING)}
                out[key] = mapped
        return True

    def _items(self, out: dict[str, Any]) -> bool:
        """Fold FALSE items into a shorter array; False if the array cannot be short enough."""
        minimum = out.get("minItems", 0)
        if isinstance(out.get("items"), dict):
            sub = self.node(out["items"])
            if sub is FALSE:
                if isinstance(minimum, int | float) and minimum > 0:
                    return False
                out.pop("items")
                out["maxItems"] = 0
            else:
                out["items"] = sub
        for key in ("items", "prefixItems"):
            if isinstance(out.get(key), list):
                kept: list[Any] = []
                for item in out[key]:
                    sub = self.node(item)
                    if sub is FALSE:
                        if isinstance(minimum, int | float) and minimum > len(kept):
                            return False
                        out["maxItems"] = min(len(kept), out.get("maxItems", len(kept)))
                        break
                    kept.append(sub)
                out[key] = kept
        return True


def _required(node: dict[str, Any]) -> set[str]:
    names = node.get("required")
    return {name for name in names if isinstance(name, str)} if isinstance(names, list) else set()


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, each emitted after those it reaches."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in sorted(edges[name]):
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == name:
                    break
            components.append(component)

    for name in edges:
        if name not in index:
            visit(name)
    return components


def _reaching(edges: dict[str, set[str]], targets: set[str]) -> set[str]:
    """The nodes from which some of ``targets`` can be reached (``targets`` included)."""
    reaching = set(targets)
    changed = True
    while changed:
        changed = False
        for name, outgoing in edges.items():
            if name not in reaching and outgoing & reaching:
                reaching.add(name)
                changed = True
    return reaching
