"""The regex features beyond plain regular expressions that a pattern uses, read by Python's own
regex parser.

Constraint backends compile a regex into an automaton, and each reads a different dialect: one
refuses a lookahead, another parses it and then ignores it (its output breaks the regex), a
third turns it into an automaton whose every mask costs seconds. So pampero does not trust a
backend to refuse what it does not enforce: it parses each pattern itself (a ``guided_regex``,
every ``pattern`` and ``patternProperties`` name of a JSON schema), names the features outside
the regular core (lookaround, backreferences, anchors inside the pattern, inline flags, ...),
and a backend takes a spec only if it enforces every feature the spec uses
(``ConstraintBackend.unsupported``).

Example::

    regex_features("(?=q)q")            # frozenset({'lookaround'})
    regex_features(r"^[\\w.-]+$")        # frozenset({'anchor at the start or end'})
    spec_regex_features(spec)           # the same, over every pattern of ``spec``
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from pampero.constraints.base import ConstraintSpec


def _stdlib(new: str, old: str) -> Any:
    """Python's regex parser module: ``re._parser`` since 3.11, ``sre_parse`` before."""
    try:
        return importlib.import_module(new)
    except ImportError:  # pragma: no cover - Python 3.10
        return importlib.import_module(old)


_sre = _stdlib("re._constants", "sre_constants")
_sre_parse = _stdlib("re._parser", "sre_parse")

LOOKAROUND = "lookaround"
BACKREFERENCE = "backreference"
CONDITIONAL = "conditional group"
ATOMIC = "atomic group or possessive quantifier"
WORD_BOUNDARY = "word boundary (\\b, \\B)"
EDGE_ANCHOR = "anchor at the start or end"
INNER_ANCHOR = "anchor inside the pattern"
FLAG_IGNORECASE = "inline flag (?i)"
_FLAG_NAMES = {
    re.IGNORECASE: FLAG_IGNORECASE,
    re.MULTILINE: "inline flag (?m)",
    re.DOTALL: "inline flag (?s)",
    re.VERBOSE: "inline flag (?x)",
    re.ASCII: "inline flag (?a)",
}
_STARTS = {_sre.AT_BEGINNING, _sre.AT_BEGINNING_STRING}
_ENDS = {_sre.AT_END, _sre.AT_END_STRING}
_BOUNDARIES = {_sre.AT_BOUNDARY, _sre.AT_NON_BOUNDARY}
_SCHEMA_KEYWORDS_WITH_REGEX = ("pattern",)


@lru_cache(maxsize=1024)
def regex_features(pattern: str) -> frozenset[str]:
    """The non-regular features ``pattern`` uses (empty for a plain regular expression).

    A pattern Python cannot parse uses no feature this module knows; it is for the backend (or
    ``validation``) to refuse.
    """
    try:
        parsed = _sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return frozenset()
    found: set[str] = set()
    _flags(parsed.state.flags, found)
    try:
        _walk(list(parsed), True, True, found)
    except RecursionError:  # nested past any limit: validation refuses it
        return frozenset()
    return frozenset(found)


def spec_regex_features(spec: ConstraintSpec) -> frozenset[str]:
    """Every feature of every regex ``spec`` holds: the regex itself, or a JSON schema's
    ``pattern``s and ``patternProperties`` names."""
    if spec.kind == "regex" and isinstance(spec.value, str):
        return regex_features(spec.value)
    if spec.kind == "json_schema" and isinstance(spec.value, str):
        return _schema_features(spec.value)
    return frozenset()


@lru_cache(maxsize=256)
def _schema_features(schema_text: str) -> frozenset[str]:
    try:
        document = json.loads(schema_text)
    except (ValueError, RecursionError):
        return frozenset()
    found: set[str] = set()
    for pattern in _schema_patterns(document):
        found |= regex_features(pattern)
    # A schema's patterns search the string (ECMA-262), so ``^...$`` is how they say "the
    # whole string": every backend's schema translation reads those anchors.
    found.discard(EDGE_ANCHOR)
    return frozenset(found)


def _schema_patterns(document: Any) -> Iterator[str]:
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in _SCHEMA_KEYWORDS_WITH_REGEX and isinstance(value, str):
                    yield value
                elif key == "patternProperties" and isinstance(value, dict):
                    yield from (name for name in value if isinstance(name, str))
                    stack.extend(value.values())
                elif key not in ("enum", "const", "default", "examples"):
                    stack.append(value)


def _flags(flags: int, found: set[str]) -> None:
    for flag, name in _FLAG_NAMES.items():
        if flags & flag:
            found.add(name)


def _consumes(item: Any) -> bool:
    """Whether ``item`` can match any text (an assertion or an empty group cannot)."""
    sub = _sre_parse.SubPattern(_sre_parse.State(), [item])
    try:
        return int(sub.getwidth()[1]) > 0
    except Exception:  # a group reference's width needs the parse state: assume it consumes
        return True


def _walk(items: list[Any], at_start: bool, at_end: bool, found: set[str]) -> None:
    """``at_start``/``at_end``: nothing can come before/after ``items`` in a match."""
    consumes = [_consumes(item) for item in items]
    last = max((i for i, c in enumerate(consumes) if c), default=-1)
    first = consumes.index(True) if last >= 0 else len(items)
    for i, (op, av) in enumerate(items):
        _node(op, av, at_start and i <= first, at_end and i >= last, found)


def _node(op: Any, av: Any, start: bool, end: bool, found: set[str]) -> None:
    visit = _VISITORS.get(op)
    if visit is not None:
        visit(av, start, end, found)


def _assertion(av: Any, start: bool, end: bool, found: set[str]) -> None:
    found.add(LOOKAROUND)
    _walk(list(av[1]), False, False, found)


def _backreference(av: Any, start: bool, end: bool, found: set[str]) -> None:
    found.add(BACKREFERENCE)


def _conditional(av: Any, start: bool, end: bool, found: set[str]) -> None:
    found.add(CONDITIONAL)
    for branch in av[1:]:
        if branch is not None:
            _walk(list(branch), False, False, found)


def _anchor(av: Any, start: bool, end: bool, found: set[str]) -> None:
    if av in _BOUNDARIES:
        found.add(WORD_BOUNDARY)
    elif (av in _STARTS and start) or (av in _ENDS and end):
        found.add(EDGE_ANCHOR)
    else:
        found.add(INNER_ANCHOR)


def _group(av: Any, start: bool, end: bool, found: set[str]) -> None:
    _, add_flags, del_flags, body = av
    _flags(add_flags | del_flags, found)
    _walk(list(body), start, end, found)


def _branch(av: Any, start: bool, end: bool, found: set[str]) -> None:
    for branch in av[1]:
        _walk(list(branch), start, end, found)


def _repeat(av: Any, start: bool, end: bool, found: set[str]) -> None:
    _, high, body = av
    once = high <= 1  # inside a repeat that may run twice, nothing is at an edge
    _walk(list(body), start and once, end and once, found)


def _possessive(av: Any, start: bool, end: bool, found: set[str]) -> None:
    found.add(ATOMIC)
    _repeat(av, start, end, found)


def _atomic(av: Any, start: bool, end: bool, found: set[str]) -> None:
    found.add(ATOMIC)
    _walk(list(av), start, end, found)


_VISITORS: dict[Any, Callable[[Any, bool, bool, set[str]], None]] = {
    _sre.ASSERT: _assertion,
    _sre.ASSERT_NOT: _assertion,
    _sre.GROUPREF: _backreference,
    _sre.GROUPREF_EXISTS: _conditional,
    _sre.AT: _anchor,
    _sre.SUBPATTERN: _group,
    _sre.BRANCH: _branch,
    _sre.MAX_REPEAT: _repeat,
    _sre.MIN_REPEAT: _repeat,
}
for _name, _visit in (("POSSESSIVE_REPEAT", _possessive), ("ATOMIC_GROUP", _atomic)):
    if hasattr(_sre, _name):  # Python >= 3.11
        _VISITORS[getattr(_sre, _name)] = _visit
