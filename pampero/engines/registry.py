"""Engines by name. Built-ins register exactly as a plugin would (entry point group
``pampero.engines``, value ``module:factory``); a factory is imported only when chosen. A
model's ``engine`` may also name a factory directly as ``module:factory``.

An engine whose libraries are not installed (the transformers engine without the
``pampero[transformers]`` extra) is refused with ``UnsupportedParameter`` naming the extra, before
anything is imported: ``check`` runs at start-up, and ``create`` checks again.

Example::

    engine = create("llamacpp", options)   # options: EngineOptions, built by serving
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from pampero.engines.base import Engine, EngineOptions
from pampero.errors import UnsupportedParameter
from pampero.registry import Registry

EngineFactory = Callable[[EngineOptions], Engine]

_ENGINES: Registry[EngineFactory] = Registry(
    "engine",
    "pampero.engines",
    {
        "llamacpp": "pampero.engines.llamacpp.engine:create",
        "transformers": "pampero.engines.transformers.engine:create",
    },
    targets=True,
)
# Built-in engines whose libraries come with an extra: (import names, extra).
REQUIRES: dict[str, tuple[tuple[str, ...], str]] = {
    "transformers": (("torch", "transformers"), "transformers"),
}


def available() -> dict[str, str]:
    """Every engine name with the ``module:factory`` that builds it."""
    return _ENGINES.available()


def check(name: str) -> None:
    """Raise unless ``name`` is a registered engine whose libraries are installed."""
    if name not in _ENGINES.available():
        _ENGINES.load(name)  # raises the miss that lists every engine
    modules, extra = REQUIRES.get(name, ((), ""))
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        raise UnsupportedParameter(
            f"engine {name!r} needs {', '.join(missing)}, not installed on this server: "
            f"pip install 'pampero[{extra}]'",
            param="engine",
        )


def create(name: str, options: EngineOptions) -> Engine:
    check(name)
    return _ENGINES.load(name)(options)
