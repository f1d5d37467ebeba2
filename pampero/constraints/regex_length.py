"""The lengths of string a regex can match whole, read from its parsed structure.

A JSON Schema ``pattern`` is searched for anywhere in the string, so it bounds the string's
length only when every match is anchored at both ends (``^...$``, ``\\A...\\Z``, or each branch of
a top-level alternation so anchored; not under the multiline flag). Then the string is exactly
what the regex matched, and its length lies within the regex's width, which Python's own regex
parser computes (lookarounds have no width). A lookahead right after the start anchor that
reaches the end (``^(?=.{8,64}$)...``) bounds the string by its own width too.
``schema_relax`` keeps that bound as ``minLength``/``maxLength`` when it drops a pattern no
backend can enforce, so the relaxed grammar stays as bounded as the pattern was.

Example::

    anchored_length(r"^(?=.*[0-9])[a-z0-9]{4,8}$")   # (4, 8)
    anchored_length(r"[\\w-]+")                        # None: unanchored
    anchored_length(r"^a+$")                           # (1, None): no upper bound
    anchored_length(r"^(?=.{1,64}$)[a-z]+(-[a-z]+)*")  # (1, 64)
"""

from __future__ import annotations

import importlib
import re
from typing import Any

# Python's regex parser (``sre_parse`` before 3.11; importing that name warns since).
_parser: Any = importlib.import_module("re._parser")
_STARTS = frozenset({_parser.AT_BEGINNING, _parser.AT_BEGINNING_STRING})
_ENDS = frozenset({_parser.AT_END, _parser.AT_END_STRING})


def anchored_length(pattern: str) -> tuple[int, int | None] | None:
    """(shortest, longest or None if unbounded) length of a string ``pattern`` matches whole,
    or None when a match need not span the whole string (or Python cannot parse it)."""
    try:
        parsed = _parser.parse(pattern)
        if parsed.state.flags & re.MULTILINE:
            return None
        items = list(parsed)
        if not _anchored(items, first=True):
            return None
        widths = [parsed.getwidth()] if _anchored(items, first=False) else []
        widths += [ahead.getwidth() for ahead in _leading_lookaheads(items)]
    except (re.error, RecursionError, OverflowError, ValueError, TypeError):
        return None
    if not widths:
        return None
    low = max(int(w[0]) for w in widths)
    high = min(int(w[1]) for w in widths)
    return low, (high if high < _parser.MAXREPEAT else None)


def _leading_lookaheads(items: list[Any]) -> list[Any]:
    """The lookaheads right after a leading start anchor that reach the end anchor."""
    found = []
    if items and items[0][0] is _parser.AT:
        for op, av in items[1:]:
            if op is not _parser.ASSERT:
                break
            direction, inner = av
            if direction == 1 and _anchored(list(inner), first=False):
                found.append(inner)
    return found


def _anchored(items: list[Any], *, first: bool) -> bool:
    """Whether the sequence ``items`` starts (``first``) or ends with an anchor on every path."""
    if not items:
        return False
    op, av = items[0] if first else items[-1]
    if op is _parser.AT:
        return av in (_STARTS if first else _ENDS)
    if op is _parser.BRANCH:
        return all(_anchored(list(branch), first=first) for branch in av[1])
    if op is _parser.SUBPATTERN:
        _group, add_flags, _del_flags, inner = av
        return not add_flags & re.MULTILINE and _anchored(list(inner), first=first)
    return False
