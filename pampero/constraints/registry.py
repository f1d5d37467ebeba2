"""Constraint backends by name, as ``guided_decoding_backend`` spells them.

Built-ins register exactly as a plugin would (entry point group ``pampero.constraint_backends``,
value ``module:Class``); a backend's module is imported when the registry first needs it, and
its library only when it compiles. A backend whose library is not installed is known but not
available.

``auto`` (the default) takes the first available backend that can express the spec, in this
order: guidance (lazy compilation in milliseconds, the widest JSON Schema coverage, masks as
fast as xgrammar's), xgrammar (compiles ahead: a second or more per schema on a small CPU),
outlines, lm-format-enforcer (pure Python, slowest masks); docs/benchmarks.md has the figures.
A GBNF grammar goes to xgrammar first, whose dialect it is (guidance converts it to Lark). If a
backend then finds at compile time that it cannot express the spec, ``auto`` moves on to the
next one; an explicitly named backend never falls back.

Only guidance comes with pampero itself; the others are extras (``pampero[xgrammar]``,
``pampero[outlines]``, ``pampero[lmfe]``, or ``pampero[structured-all]`` for the three), and a
400 naming a backend that is not installed, or refusing a spec none of the installed ones can
express, says which extra to install.

Example::

    registry = BackendRegistry()
    registry.candidates(ConstraintSpec(kind="grammar", value='root ::= "a"+', param="p"))
    # ['xgrammar', 'guidance']
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pampero.constraints.base import ConstraintBackend, ConstraintSpec
from pampero.constraints.validation import grammar_syntax
from pampero.errors import InvalidRequestError, UnsupportedParameter
from pampero.registry import load_target, read_plugins

AUTO = "auto"
ALL = "all"
ENTRY_POINT_GROUP = "pampero.constraint_backends"
ALL_EXTRA = "structured-all"


@dataclass(frozen=True)
class BackendEntry:
    target: str  # "module:Class", the class built with no arguments
    requires: str | None = None  # import name of the library it needs, if any
    extra: str | None = None  # pampero's extra that installs it, if it is not a core dependency

    def install_hint(self) -> str:
        if self.extra is not None:
            return f"pip install 'pampero[{self.extra}]'"
        return f"pip install {self.requires or 'its package'}"


BUILTIN: dict[str, BackendEntry] = {  # in ``auto`` order
    "guidance": BackendEntry(
        "pampero.constraints.backends.llguidance:GuidanceBackend", "llguidance"
    ),
    "xgrammar": BackendEntry(
        "pampero.constraints.backends.xgrammar:XGrammarBackend", "xgrammar", "xgrammar"
    ),
    "outlines": BackendEntry(
        "pampero.constraints.backends.outlines:OutlinesBackend", "outlines_core", "outlines"
    ),
    "lm-format-enforcer": BackendEntry(
        "pampero.constraints.backends.lmfe:FormatEnforcerBackend", "lmformatenforcer", "lmfe"
    ),
}
ALIASES = {"llguidance": "guidance", "outlines-core": "outlines", "lmfe": "lm-format-enforcer"}
_FIRST_FOR_GBNF = "xgrammar"


class BackendRegistry:
    """Name → backend, with the ``auto`` policy. One instance per backend name, built lazily."""

    def __init__(self, entries: Mapping[str, BackendEntry] | None = None) -> None:
        if entries is None:
            found = dict(BUILTIN)
            for name, target in read_plugins(ENTRY_POINT_GROUP):
                found.setdefault(name, BackendEntry(target))
            entries = found
        self._entries = dict(entries)
        self._instances: dict[str, ConstraintBackend] = {}
        self._lock = threading.Lock()

    def register(self, name: str, target: str, *, requires: str | None = None) -> None:
        self._entries[name] = BackendEntry(target, requires)

    @property
    def entries(self) -> dict[str, BackendEntry]:
        """Every registered backend (picklable: compile workers rebuild the registry from it)."""
        return dict(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def available(self) -> list[str]:
        """Registered backends whose library is installed, in ``auto`` order."""
        return [name for name, entry in self._entries.items() if _installed(entry.requires)]

    def warm_up_names(self, requested: Iterable[str]) -> list[str]:
        """The backends to import and prepare at start-up: ``auto`` is the first available one
        (what ``auto`` tries first for JSON), ``all`` every available one, or names. The rest
        load on first use, so an idle server holds no library nobody asked for (xgrammar alone
        brings torch). Raises the error that names an unknown or uninstalled backend."""
        available = self.available()
        chosen: list[str] = []
        for asked in requested:
            name = ALIASES.get(asked, asked)
            if name == ALL:
                picks = available
            elif name == AUTO:
                picks = available[:1]
            elif name not in self._entries:
                raise InvalidRequestError(
                    f"unknown constraint backend {asked!r}; registered: "
                    + ", ".join([AUTO, ALL, *self._entries]),
                    param="constraint_warm_up",
                )
            elif name not in available:
                raise UnsupportedParameter(
                    f"constraint backend {name!r} is not installed on this server "
                    f"({self._entries[name].install_hint()})",
                    param="constraint_warm_up",
                )
            else:
                picks = [name]
            chosen += [pick for pick in picks if pick not in chosen]
        return chosen

    def backend(self, name: str) -> ConstraintBackend:
        name = ALIASES.get(name, name)
        with self._lock:
            found = self._instances.get(name)
            if found is None:
                found = self._instances[name] = load_target(self._entries[name].target)()
            return found

    def candidates(self, spec: ConstraintSpec) -> list[str]:
        """The backends to try for ``spec``, in order; raises the 400 that explains why none."""
        name = ALIASES.get(spec.backend, spec.backend)
        available = self.available()
        if name == AUTO:
            return self._auto(spec, available)
        if name not in self._entries:
            raise InvalidRequestError(
                f"unknown guided_decoding_backend {spec.backend!r}; available: "
                + ", ".join([AUTO, *available]),
                param="guided_decoding_backend",
            )
        if name not in available:
            raise UnsupportedParameter(
                f"guided_decoding_backend {name!r} is not installed on this server "
                f"({self._entries[name].install_hint()}); available: "
                + ", ".join([AUTO, *available]),
                param="guided_decoding_backend",
            )
        reason = self.backend(name).unsupported(spec)
        if reason is not None:
            raise UnsupportedParameter(f"{_describe(spec)}: {reason}", param=spec.param)
        return [name]

    def _auto(self, spec: ConstraintSpec, available: list[str]) -> list[str]:
        order = list(available)
        if spec.kind == "grammar" and grammar_syntax(spec) == "gbnf" and _FIRST_FOR_GBNF in order:
            order.remove(_FIRST_FOR_GBNF)
            order.insert(0, _FIRST_FOR_GBNF)
        reasons = {name: self.backend(name).unsupported(spec) for name in order}
        chosen = [name for name in order if reasons[name] is None]
        if not chosen:
            why = [f"{name}: {reason}" for name, reason in reasons.items()]
            missing = [name for name in self._entries if name not in available]
            if missing:
                why.append(
                    f"not installed: {', '.join(missing)} (pip install 'pampero[{ALL_EXTRA}]')"
                )
            raise UnsupportedParameter(
                f"no constraint backend on this server can express {_describe(spec)}"
                f" ({'; '.join(why)})",
                param=spec.param,
            )
        return chosen


def _describe(spec: ConstraintSpec) -> str:
    if spec.kind == "grammar":
        return f"a {grammar_syntax(spec).upper()} grammar"
    extra = " with a whitespace pattern" if spec.whitespace_pattern is not None else ""
    return f"a {spec.kind} constraint{extra}"


def _installed(module: str | None) -> bool:
    return module is None or importlib.util.find_spec(module) is not None
