"""The served models: ids, aliases, and the engine behind each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pampero.engines import registry
from pampero.engines.base import Engine, EngineOptions
from pampero.errors import ModelNotFound
from pampero.inference import EngineStats, SpeculativeParams
from pampero.settings import ModelConfig, Settings


@dataclass
class ServedModel:
    config: ModelConfig
    engine: Engine
    created: int

    @property
    def id(self) -> str:
        return self.config.id


class ModelHub:
    """Resolves the ``model`` field of a request to a running engine."""

    def __init__(self, settings: Settings) -> None:
        self._models: list[ServedModel] = []
        self._names: dict[str, ServedModel] = {}
        now = int(time.time())
        for config in settings.models:
            engine = registry.create(config.engine, engine_options(config, settings))
            served = ServedModel(config, engine, now)
            self._models.append(served)
            for name in (config.id, *config.aliases):
                self._names[name] = served

    async def start(self) -> None:
        await asyncio.gather(*(m.engine.start() for m in self._models))

    async def halt(self) -> None:
        """End every request in every engine (a drain's deadline); models stay loaded."""
        await asyncio.gather(*(m.engine.halt() for m in self._models), return_exceptions=True)

    async def stop(self) -> None:
        await asyncio.gather(*(m.engine.stop() for m in self._models), return_exceptions=True)

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models)

    def get(self, name: str) -> ServedModel:
        served = self._names.get(name)
        if served is None:
            raise ModelNotFound.among(name, self._names)
        return served

    def names(self) -> dict[str, ServedModel]:
        return dict(self._names)

    def alive(self) -> bool:
        return all(m.engine.is_alive() for m in self._models)

    def stats(self) -> list[tuple[str, EngineStats]]:
        return [(m.id, m.engine.stats()) for m in self._models]


def engine_options(model: ModelConfig, settings: Settings) -> EngineOptions:
    """What ``model``'s engine is given: the server's engine settings, overridden per model."""
    threads = settings.for_model(model, "threads")
    return EngineOptions(
        model_id=model.id,
        path=model.path,
        home=settings.home,
        n_ctx=settings.for_model(model, "n_ctx"),
        max_seqs=settings.for_model(model, "max_seqs"),
        max_queue=settings.for_model(model, "max_queue"),
        threads=threads,
        threads_batch=settings.for_model(model, "threads_batch") or threads,
        n_batch=settings.for_model(model, "n_batch"),
        prefill_chunk=settings.for_model(model, "prefill_chunk"),
        kv_unified=settings.for_model(model, "kv_unified"),
        prefix_cache=settings.for_model(model, "prefix_cache"),
        mmproj=model.mmproj,
        draft_model=model.draft_model,
        prefix_cache_tokens=settings.for_model(model, "prefix_cache_tokens"),
        speculative=SpeculativeParams(
            settings.for_model(model, "speculative_method"),
            settings.for_model(model, "speculative_tokens"),
        ),
    )
