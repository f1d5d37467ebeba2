"""Engines by name. Built-ins register exactly as a plugin would (entry point group
``pampero.engines``, value ``module:factory``); a factory is imported only when chosen. A
model's ``engine`` may also name a factory directly as ``module:factory``.

Example::

    engine = create("llamacpp", model_config, settings)
"""

from __future__ import annotations

from collections.abc import Callable

from pampero.engines.base import Engine
from pampero.registry import Registry
from pampero.settings import ModelConfig, Settings

EngineFactory = Callable[[ModelConfig, Settings], Engine]

_ENGINES: Registry[EngineFactory] = Registry(
    "engine",
    "pampero.engines",
    {
        "llamacpp": "pampero.engines.llamacpp.engine:create",
        "transformers": "pampero.engines.transformers.engine:create",
    },
    targets=True,
)


def available() -> dict[str, str]:
    """Every engine name with the ``module:factory`` that builds it."""
    return _ENGINES.available()


def create(name: str, model: ModelConfig, settings: Settings) -> Engine:
    return _ENGINES.load(name)(model, settings)
