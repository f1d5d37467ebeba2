"""Intersections of JSON Schemas computed on the document, for a backend that cannot.

guidance (llguidance) meets ``allOf``, a ``$ref`` beside other keywords, or a property that a
``patternProperties`` entry of its own object also matches, by intersecting the schemas
involved. To intersect a ``$ref`` it needs the target compiled first, so a recursive
definition that meets such an intersection on its way back to itself is refused ("circular
references with sibling keys are not supported"). Real schemas do that all the time: the
Washington Post's content schema reaches itself through ``allOf: [{$ref: reference}, {...}]``.

``resolve_intersections`` computes those intersections on the JSON document instead, so the
backend only meets ``$ref`` alone:

- where a ``$ref`` meets other constraints, the intersection becomes a definition of its own
  (``__and_N``) whose body is the target's body intersected with the rest; each pair is
  defined once, so recursion through it ends;
- ``anyOf`` and ``oneOf`` meet the rest branch by branch (both distribute over "and": a
  document matches exactly one ``Bi and R`` when it matches R and exactly one ``Bi``);
- two plain schemas merge keyword by keyword: ``properties`` pairwise (a name one side lacks
  meets that side's ``additionalProperties``), ``required`` united, ``type`` and ``enum``
  intersected, bounds tightened; keywords that differ and hold no ``$ref`` stay side by side
  in an ``allOf`` the backend intersects itself (it can: there is no ``$ref`` in them);
- a property that a pattern matching every name also constrains (``patternProperties: {".*":
  S}``) gets S folded in, and S becomes ``additionalProperties`` (the pattern leaves nothing
  else for it to apply to).

Every step keeps the set of valid documents the same. Where one cannot (a keyword pairing this
module does not merge, a ``$ref`` into the middle of a schema, the size limits), the function
returns None and the schema is left as it was, for the backend to refuse.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from pampero.constraints.schema_walk import with_children

MAX_DEFINITIONS = 400  # intersections defined before giving up
MAX_GROWTH = 6  # output size, in multiples of the input's
MAX_DEPTH = 64  # nested intersections
MAX_STEPS = 100_000  # intersections computed in all

_ANNOTATIONS = frozenset(
    {"description", "title", "$comment", "examples", "default", "$schema", "readOnly",
     "writeOnly", "deprecated", "_format"}
)  # fmt: skip
_APPLICATORS = ("$ref", "allOf", "anyOf", "oneOf")
_CONTAINERS = ("definitions", "$defs")
_OBJECT = ("properties", "patternProperties", "additionalProperties")
_ARRAY = ("items", "additionalItems", "prefixItems")
_NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_AT_LEAST = ("minLength", "minItems", "minProperties")
_AT_MOST = ("maxLength", "maxItems", "maxProperties")
_DEF_REF = re.compile(r"^#/(definitions|\$defs)/([^/]+)$")


class _GiveUp(Exception):
    """The document holds something these intersections do not compute exactly."""


def resolve_intersections(schema: Any) -> Any | None:
    """An equivalent schema where no ``$ref`` meets another constraint, or None."""
    if not isinstance(schema, dict):
        return None
    try:
        return _Resolver(schema).run()
    except (_GiveUp, RecursionError):
        return None


class _Resolver:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.container = "$defs" if isinstance(root.get("$defs"), dict) else "definitions"
        self.normalized: dict[str, Any] = {}  # ref -> normalized target
        self.pairs: dict[str, str] = {}  # memo key -> definition name
        self.pending: dict[str, tuple[str, list[Any]]] = {}  # name -> (ref, other groups)
        self.defined: dict[str, Any] = {}
        self.size = 0
        self.steps = 0
        self.budget = MAX_GROWTH * max(len(json.dumps(root)), 4096)

    def run(self) -> dict[str, Any]:
        _check_references(self.root)
        for ref in _definition_refs(self.root):
            self.body(ref)
        top = self.body("#")
        while self.pending:
            self.define(next(iter(self.pending)))
        top = self.pruned(top)
        out: dict[str, Any] = dict(top) if isinstance(top, dict) else {"allOf": [top]}
        for key in ("$schema", "$id"):
            if key in self.root:
                out[key] = self.root[key]
        for container in _CONTAINERS:
            if isinstance(self.root.get(container), dict):
                out[container] = {
                    name: self.normalized[f"#/{container}/{_escape(name)}"]
                    for name in self.root[container]
                }
        if self.defined:
            out[self.container] = {**out.get(self.container, {}), **self.defined}
        return out

    def pruned(self, top: Any) -> Any:
        """Intersections that nothing matches, replaced by ``false`` wherever they are
        referenced (the backend refuses a required property that nothing matches), until no
        more turn out empty."""
        while True:
            before = sum(body is False for body in self.defined.values())
            empty = {f"#/{self.container}/{n}" for n, b in self.defined.items() if b is False}
            self.defined = {n: _pruned(b, empty) for n, b in self.defined.items()}
            self.normalized = {r: _pruned(b, empty) for r, b in self.normalized.items()}
            top = _pruned(top, empty)
            if sum(body is False for body in self.defined.values()) == before:
                return top

    # -- normal form: no $ref meets another constraint ----------------------------------------

    def define(self, name: str) -> Any:
        """The body of intersection ``name``: its target's body and the other groups."""
        if name not in self.defined:
            if name not in self.pending:
                raise _GiveUp(f"intersection {name} defined through itself")
            ref, others = self.pending.pop(name)
            result = self.body(ref)
            for other in others:
                result = self.intersect(result, other, 0)
            self.defined[name] = result
            self.size += len(json.dumps(result))
            if self.size > self.budget:
                raise _GiveUp("too large")
        return self.defined[name]

    def body(self, ref: str) -> Any:
        """The normalized schema ``ref`` points at (its constraints only)."""
        name = ref.rsplit("/", 1)[-1]
        if ref.startswith(f"#/{self.container}/") and name in self.pairs.values():
            return self.define(name)
        if ref not in self.normalized:
            target = _lookup(self.root, ref)
            if ref == "#":
                target = {k: v for k, v in target.items() if k not in _CONTAINERS}
            self.normalized[ref] = self.normalize(target, 0)
        return self.normalized[ref]

    def normalize(self, node: Any, depth: int) -> Any:
        if not isinstance(node, dict):
            return node
        if depth > MAX_DEPTH:
            raise _GiveUp("too deep")
        out = {k: v for k, v in node.items() if k not in _CONTAINERS}
        out = with_children(out, lambda child: self.normalize(child, depth + 1))
        if not _has_ref(out):
            return out  # the backend intersects what holds no $ref itself
        parts = _groups(out)
        if len(parts) > 1:
            result = parts[0]
            for part in parts[1:]:
                result = self.intersect(result, part, depth + 1)
            return result
        return self.patterns_folded(out, depth) if parts else out

    # -- intersection --------------------------------------------------------------------------

    def intersect(self, a: Any, b: Any, depth: int) -> Any:
        self.steps += 1
        if depth > MAX_DEPTH or self.steps > MAX_STEPS:
            raise _GiveUp("too deep")
        a, b = _strip(a), _strip(b)
        if a is True or a == {}:
            return b
        if b is True or b == {}:
            return a
        if a is False or b is False:
            return False
        if _canon(a) == _canon(b):
            return a
        if not _has_ref(a) and not _has_ref(b):
            return {"allOf": [a, b]}
        parts = _groups(a) + _groups(b)
        refs = [p for p in parts if set(p) == {"$ref"}]
        if refs:
            first = refs[0]
            others = [p for p in parts if p is not first]
            return {"$ref": self.pair(first["$ref"], others)}
        for key in ("anyOf", "oneOf"):
            split = next((p for p in parts if set(p) == {key}), None)
            if split is not None:
                return self.distributed(key, split, [p for p in parts if p is not split], depth)
        result = parts[0]
        for part in parts[1:]:
            result = self.merge(result, part, depth + 1)
            if result is False:
                return False
        return result

    def distributed(self, key: str, split: dict[str, Any], rest: list[Any], depth: int) -> Any:
        """``anyOf``/``oneOf`` and the ``rest``: each branch and the rest."""
        branches = []
        for branch in split[key]:
            for other in rest:
                branch = self.intersect(branch, other, depth + 1)
            if branch is not False:
                branches.append(branch)
        if not branches:
            return False
        return {key: branches} if len(branches) > 1 else branches[0]

    def pair(self, ref: str, others: list[Any]) -> str:
        _check_ref(ref)
        key = json.dumps([ref, sorted(_canon(o) for o in others)])
        if key not in self.pairs:
            if len(self.pairs) >= MAX_DEFINITIONS:
                raise _GiveUp("too many intersections")
            name = f"__and_{len(self.pairs)}"
            while name in self.root.get(self.container, {}):
                name = "_" + name
            self.pairs[key] = name
            self.pending[name] = (ref, others)
        return f"#/{self.container}/{self.pairs[key]}"

    def merge(self, a: dict[str, Any], b: dict[str, Any], depth: int) -> Any:
        """Two schemas without applicators, as one."""
        out: dict[str, Any] = {}
        side: list[dict[str, Any]] = []  # $ref-free constraints kept for the backend to meet
        if not self.merge_object(a, b, out, depth) or not self.merge_array(a, b, out, depth):
            return False
        types = _types(a, b)
        if types is not None:
            if not types:
                return False
            out["type"] = sorted(types) if len(types) > 1 else next(iter(types))
        values = _values(a, b)
        if values is not None:
            if not values:
                return False
            out["enum"] = values
        required = [*_names(a.get("required")), *_names(b.get("required"))]
        if required:
            out["required"] = list(dict.fromkeys(required))
        for key in _AT_LEAST + _AT_MOST:
            found = [s[key] for s in (a, b) if _count(s.get(key))]
            if found:
                out[key] = max(found) if key in _AT_LEAST else min(found)
        if any(k in a for k in _NUMERIC) and any(k in b for k in _NUMERIC):
            out.update({k: a[k] for k in _NUMERIC if k in a})
            side.append({k: b[k] for k in _NUMERIC if k in b})
        else:
            out.update({k: s[k] for s in (a, b) for k in _NUMERIC if k in s})
        handled = {*_OBJECT, *_ARRAY, "type", "enum", "const", "required", *_AT_LEAST,
                   *_AT_MOST, *_NUMERIC}  # fmt: skip
        for key in sorted((set(a) | set(b)) - handled):
            if key in a and key in b and _canon(a[key]) != _canon(b[key]):
                if _has_ref(a[key]) or _has_ref(b[key]):
                    raise _GiveUp(f"two {key} with $ref")
                side.append({key: b[key]})
            out[key] = a[key] if key in a else b[key]
        if side:
            out["allOf"] = side
        return self.patterns_folded(out, depth)

    def merge_object(self, a: dict[str, Any], b: dict[str, Any], out: dict[str, Any],
                     depth: int) -> bool:  # fmt: skip
        if not any(k in s for s in (a, b) for k in _OBJECT):
            return True
        props_a, props_b = _map(a.get("properties")), _map(b.get("properties"))
        pats_a, pats_b = _map(a.get("patternProperties")), _map(b.get("patternProperties"))
        extra_a, extra_b = a.get("additionalProperties", True), b.get("additionalProperties", True)
        if pats_a and pats_b and _canon(pats_a) != _canon(pats_b):
            raise _GiveUp("patterns on both sides")
        if (pats_a and not _trivial(extra_b)) or (pats_b and not _trivial(extra_a)):
            raise _GiveUp("patterns against additionalProperties")
        properties = {}
        for name in [*props_a, *(n for n in props_b if n not in props_a)]:
            mine = _own(name, props_a, pats_a, extra_a)
            theirs = _own(name, props_b, pats_b, extra_b)
            properties[name] = self.intersect(mine, theirs, depth + 1)
        if properties:
            out["properties"] = properties
        patterns = pats_a or pats_b
        if patterns:
            out["patternProperties"] = patterns
        extra = self.intersect(extra_a, extra_b, depth + 1)
        if extra is not True and extra != {}:
            out["additionalProperties"] = extra
        return True

    def merge_array(self, a: dict[str, Any], b: dict[str, Any], out: dict[str, Any],
                    depth: int) -> bool:  # fmt: skip
        if not any(k in s for s in (a, b) for k in _ARRAY):
            return True
        tuples = [s for s in (a, b) if "prefixItems" in s or isinstance(s.get("items"), list)]
        if tuples:
            other = b if tuples[0] is a else a
            if len(tuples) > 1 or any(k in other for k in _ARRAY):
                raise _GiveUp("tuple items")
            out.update({k: tuples[0][k] for k in _ARRAY if k in tuples[0]})
            return True
        if "items" in a or "items" in b:
            out["items"] = self.intersect(a.get("items", True), b.get("items", True), depth + 1)
        return True

    def patterns_folded(self, node: dict[str, Any], depth: int) -> dict[str, Any]:
        """``node`` where no pattern holding a ``$ref`` meets a listed property (or the other
        way round): the pattern's schema folds into the properties it matches, and the pattern
        stops matching them (a pattern matching every name becomes ``additionalProperties``;
        a character-class pattern gets the names cut out)."""
        properties, patterns = _map(node.get("properties")), _map(node.get("patternProperties"))
        if not properties or not patterns:
            return node
        out = {k: v for k, v in node.items() if k != "patternProperties"}
        out["properties"], kept = dict(properties), {}
        for pattern, schema in patterns.items():
            names = [n for n in properties if _matches(pattern, n)]
            if not any(_has_ref(schema) or _has_ref(properties[n]) for n in names):
                kept[pattern] = schema
                continue
            for name in names:
                out["properties"][name] = self.intersect(out["properties"][name], schema, depth)
            if _universal(pattern) and len(patterns) == 1:
                out["additionalProperties"] = schema  # the pattern leaves it nothing else
                continue
            narrowed = _without_names(pattern, names)
            if narrowed is None:
                raise _GiveUp(f"pattern {pattern!r} meets a property")
            if narrowed:
                kept[narrowed] = schema
        if kept:
            out["patternProperties"] = kept
        return out


def _pruned(node: Any, empty: set[str]) -> Any:
    """``node`` with references into ``empty`` as ``false``, and what that empties."""
    if not isinstance(node, dict):
        return node
    if node.get("$ref") in empty:
        return False
    out = with_children(node, lambda child: _pruned(child, empty), containers=False)
    if False in out.get("allOf", []):
        return False
    for key in ("anyOf", "oneOf"):
        if isinstance(out.get(key), list):
            out[key] = [branch for branch in out[key] if branch is not False]
            if not out[key]:
                return False
    if out.get("type") in ("object", ["object"]) and any(
        not _allowed(out, name) for name in _names(out.get("required"))
    ):
        return False  # an object, which must have a property it cannot have
    return out


def _allowed(node: dict[str, Any], name: str) -> bool:
    properties = _map(node.get("properties"))
    if name in properties:
        return properties[name] is not False
    patterns = _map(node.get("patternProperties"))
    return bool(patterns) or node.get("additionalProperties", True) is not False


# -- helpers -----------------------------------------------------------------------------------


def _groups(node: Any) -> list[Any]:
    """``node`` as the constraints that must all hold: the plain keywords, the ``$ref``,
    each ``allOf`` item (flattened), the ``anyOf``, the ``oneOf``."""
    node = _strip(node)
    if not isinstance(node, dict):
        return [node]
    plain = {k: v for k, v in node.items() if k not in _APPLICATORS}
    found: list[Any] = [plain] if plain else []
    if isinstance(node.get("$ref"), str):
        found.append({"$ref": node["$ref"]})
    elif "$ref" in node:
        raise _GiveUp("$ref is not a string")
    for item in node.get("allOf", []) if isinstance(node.get("allOf"), list) else []:
        found.extend(_groups(item))
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            found.append({key: node[key]})
    return found


def _strip(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    return {k: v for k, v in node.items() if k not in _ANNOTATIONS and k not in _CONTAINERS}


def _own(name: str, props: dict[str, Any], pats: dict[str, Any], extra: Any) -> Any:
    """What one side asks of property ``name`` beyond its patterns (which stay patterns)."""
    if name in props:
        return props[name]
    if any(_matches(p, name) for p in pats):
        return True
    return extra


def _types(a: dict[str, Any], b: dict[str, Any]) -> set[str] | None:
    found: set[str] | None = None
    for side in (a, b):
        declared = side.get("type")
        if declared is None:
            continue
        names = {declared} if isinstance(declared, str) else set(declared)
        if found is None:
            found = names
        else:
            both = found & names
            if {"integer", "number"} <= found | names and "integer" in found ^ names:
                both.add("integer")
            found = both
    return found


def _values(a: dict[str, Any], b: dict[str, Any]) -> list[Any] | None:
    found: list[Any] | None = None
    for side in (a, b):
        for allowed in ([side["const"]] if "const" in side else None, side.get("enum")):
            if not isinstance(allowed, list):
                continue
            if found is None:
                found = list(allowed)
            else:
                keys = {_value_key(v) for v in allowed}
                found = [v for v in found if _value_key(v) in keys]
    return found


def _value_key(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"n:{float(value)!r}"
    return "v:" + json.dumps(value, sort_keys=True)


def _names(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _trivial(schema: Any) -> bool:
    return schema is True or schema == {}


def _canon(node: Any) -> str:
    return json.dumps(node, sort_keys=True)


def _has_ref(node: Any) -> bool:
    if isinstance(node, dict):
        return "$ref" in node or any(_has_ref(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_ref(v) for v in node)
    return False


def _matches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except (re.error, RecursionError):
        raise _GiveUp("pattern") from None


def _universal(pattern: str) -> bool:
    """The pattern matches every name: it can match the empty string and is anchored on at
    most one side, with no other anchors or alternatives (``.*``, ``^[a-z_]*``)."""
    core = pattern
    if core.startswith("^"):
        core = core[1:]
    elif core.endswith("$") and not core.endswith("\\$"):
        core = core[:-1]
    if any(mark in core for mark in ("^", "$", "|", "\\b", "\\B", "(?")):
        return False
    try:
        return re.fullmatch(core, "") is not None
    except re.error:
        return False


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _check_ref(ref: str) -> None:
    if ref != "#" and not _DEF_REF.match(ref):
        raise _GiveUp(f"$ref {ref!r}")


def _check_references(root: dict[str, Any]) -> None:
    """Only references to the root or to a definition (whose bodies this keeps equivalent),
    and no ``$id`` below the root (which would move what they resolve against)."""

    def walk(node: Any, top: bool) -> None:
        if isinstance(node, dict):
            if "$id" in node and not top:
                raise _GiveUp("$id")
            if "$ref" in node:
                if not isinstance(node["$ref"], str):
                    raise _GiveUp("$ref")
                _check_ref(node["$ref"])
            for key, value in node.items():
                if key not in ("enum", "const", *_ANNOTATIONS):
                    walk(value, False)
        elif isinstance(node, list):
            for value in node:
                walk(value, False)

    walk(root, True)


def _definition_refs(root: dict[str, Any]) -> list[str]:
    return [
        f"#/{container}/{_escape(name)}"
        for container in _CONTAINERS
        if isinstance(root.get(container), dict)
        for name in root[container]
    ]


def _lookup(root: dict[str, Any], ref: str) -> Any:
    if ref == "#":
        return root
    match = _DEF_REF.match(ref)
    if match is None:
        raise _GiveUp(f"$ref {ref!r}")
    name = match[2].replace("~1", "/").replace("~0", "~")
    container = root.get(match[1])
    if not isinstance(container, dict) or name not in container:
        raise _GiveUp(f"$ref {ref!r} has no target")
    return copy.deepcopy(container[name])


_BRACKET = r"\[[^\]\\^][^\]\\]*\]"  # [...] without escapes, not negated
_CLASS_PATTERN = re.compile(rf"^\^(?:\((?:\?:)?({_BRACKET})\)|({_BRACKET}))([*+])\$$")
_CLASS_META = frozenset("\\]^-[&~")
_REGEX_META = frozenset(".^$*+?()[]{}|\\/-")


def _without_names(pattern: str, names: list[str]) -> str | None:
    """A pattern matching what ``^[C]*$`` (or ``^[C]+$``, ``^([C])*$``) matches except the
    ``names``, written without lookahead (which the backend's regexes lack): for every
    prefix of a name, that prefix followed by a character no name continues it with, then
    anything; and every prefix that is not itself a name. "" when nothing is left; None for
    other patterns."""
    match = _CLASS_PATTERN.match(pattern)
    if match is None:
        return None
    bracket, repeat = match[1] or match[2], match[3]
    chars = [chr(i) for i in range(128) if re.fullmatch(bracket, chr(i))]
    if re.fullmatch(bracket, "\u00e9") or re.fullmatch(bracket, "\u0100"):
        return None  # reaches past ASCII: not enumerable here
    trie: dict[str, set[str]] = {"": set()}
    for name in names:
        for i in range(len(name) + 1):
            trie.setdefault(name[:i], set())
            if i < len(name):
                trie[name[:i]].add(name[i])
    everything = _char_class(chars)
    branches = []
    for prefix, following in sorted(trie.items()):
        rest = _char_class([c for c in chars if c not in following])
        if rest:
            branches.append(f"{_literal(prefix)}{rest}{everything}*")
        if prefix not in names and (prefix or repeat == "*"):
            branches.append(_literal(prefix))
    if not branches:
        return ""
    return "^(?:" + "|".join(branches) + ")$"


def _char_class(chars: list[str]) -> str:
    if not chars:
        return ""
    codes = sorted(ord(c) for c in chars)
    parts, start, prev = [], codes[0], codes[0]
    for code in [*codes[1:], -1]:
        if code == prev + 1:
            prev = code
            continue
        if prev - start >= 2 and chr(start).isalnum() and chr(prev).isalnum():
            parts.append(f"{chr(start)}-{chr(prev)}")
        else:
            parts.extend(_class_char(chr(c)) for c in range(start, prev + 1))
        start = prev = code
    return "[" + "".join(parts) + "]"


def _class_char(char: str) -> str:
    if char in _CLASS_META:
        return "\\" + char
    if not char.isprintable() or char == " ":
        return f"\\x{ord(char):02x}"
    return char


def _literal(text: str) -> str:
    return "".join(_literal_char(c) for c in text)


def _literal_char(char: str) -> str:
    if char in _REGEX_META:
        return "\\" + char
    return char if char.isprintable() and char != " " else f"\\x{ord(char):02x}"
