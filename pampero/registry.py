"""Name-keyed registries of ``module:attr`` targets: built-ins, then entry-point plugins.

Built-ins register exactly as a plugin would: a name and a ``module:attr`` string, imported only
when the name is chosen; installed packages add names through an entry-point group, and may not
replace a built-in name. A miss is a 400 that lists every registered name.

Example::

    ENGINES: Registry[EngineFactory] = Registry(
        "engine", "pampero.engines", {"llamacpp": "pampero.engines.llamacpp.engine:create"}
    )
    ENGINES.available()                # {"llamacpp": "pampero.engines.llamacpp.engine:create"}
    factory = ENGINES.load("llamacpp")  # imports pampero.engines.llamacpp.engine now
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from pampero.errors import InvalidRequestError

T = TypeVar("T")

PluginReader = Callable[[str], Iterable[tuple[str, str]]]


def read_plugins(group: str) -> list[tuple[str, str]]:
    """The ``(name, "module:attr")`` pairs installed packages register under ``group``."""
    return [(entry.name, entry.value) for entry in entry_points(group=group)]


def load_target(target: str) -> Any:
    """What a ``module:attr`` string names, its module imported now."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


class Registry(Generic[T]):
    """The names of one kind of thing (``kind``, as a miss message says it), each a ``module:attr``.

    ``param`` is the request field a miss blames; ``plugins`` reads an entry-point group (give a
    cached reader where a name is looked up for every request). With ``targets``, a name may
    also be a ``module:attr`` string, loaded as is: only for names that come from the server's
    own settings (engines, backends), never for names a request carries.
    """

    def __init__(
        self,
        kind: str,
        group: str,
        builtin: Mapping[str, str],
        *,
        param: str | None = None,
        plugins: PluginReader = read_plugins,
        targets: bool = False,
    ) -> None:
        self.kind = kind
        self.group = group
        self.param = param if param is not None else kind.replace(" ", "_")
        self._builtin = dict(builtin)
        self._plugins = plugins
        self._targets = targets

    def available(self) -> dict[str, str]:
        """Every registered name with the ``module:attr`` that provides it."""
        found = dict(self._builtin)
        for name, target in self._plugins(self.group):
            found.setdefault(name, target)
        return found

    def load(self, name: str, *, param: str | None = None) -> T:
        """What ``name`` is registered as; ``InvalidRequestError`` (on ``param``) if nothing."""
        registered = self.available()
        if self._targets and name not in registered and ":" in name:
            target: T = load_target(name)
            return target
        if name not in registered:
            raise InvalidRequestError(
                f"unknown {self.kind} {name[:100]!r}; available: {', '.join(sorted(registered))}",
                param=param if param is not None else self.param,
            )
        found: T = load_target(registered[name])
        return found
