"""Engines by name. Built-ins register exactly as a plugin would (entry point group
``pampero.engines``, value ``module:factory``); a factory is imported only when chosen.

Example::

    engine = create("llamacpp", model_config, settings)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from pampero.engines.base import Engine
from pampero.errors import InvalidRequestError
from pampero.settings import ModelConfig, Settings

EngineFactory = Callable[[ModelConfig, Settings], Engine]

_BUILTIN: dict[str, str] = {
    "llamacpp": "pampero.engines.llamacpp.engine:create",
    "transformers": "pampero.engines.transformers.engine:create",
}


def available() -> dict[str, str]:
    """Every engine name with the ``module:factory`` that builds it."""
    found = dict(_BUILTIN)
    for entry in entry_points(group="pampero.engines"):
        found.setdefault(entry.name, entry.value)
    return found


def create(name: str, model: ModelConfig, settings: Settings) -> Engine:
    engines = available()
    if name not in engines:
        raise InvalidRequestError(
            f"unknown engine {name!r}; available: {', '.join(sorted(engines))}", param="engine"
        )
    module_name, _, attr = engines[name].partition(":")
    factory: Any = getattr(importlib.import_module(module_name), attr)
    engine: Engine = factory(model, settings)
    return engine
