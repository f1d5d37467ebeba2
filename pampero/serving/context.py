"""What every serving use case shares: the models, the metrics, the settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pampero.media import ImageSource, MediaPolicy
from pampero.observability import Metrics
from pampero.serving.hub import ModelHub
from pampero.serving.structured import Constraints
from pampero.settings import Settings

T = TypeVar("T")


@dataclass
class ServingContext:
    hub: ModelHub
    metrics: Metrics
    settings: Settings
    constraints: Constraints
    images: ImageSource
    media_policy: MediaPolicy


def ignored_header(names: Sequence[str]) -> dict[str, str]:
    """The ``x-pampero-ignored-params`` header listing fields that had no effect."""
    unique = list(dict.fromkeys(names))
    return {"x-pampero-ignored-params": ", ".join(unique)[:4000]} if unique else {}


async def merge(sources: Sequence[AsyncIterator[T]]) -> AsyncIterator[T]:
    """Items of several async iterators as they come; an error in one ends all."""
    if len(sources) == 1:
        async for item in sources[0]:
            yield item
        return
    queue: asyncio.Queue[tuple[int, T | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, source: AsyncIterator[T]) -> None:
        try:
            async for item in source:
                await queue.put((i, item))
            await queue.put((i, None))
        except BaseException as exc:  # delivered to the consumer, which re-raises it
            await queue.put((i, exc))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(sources)]
    try:
        remaining = len(tasks)
        while remaining:
            _, got = await queue.get()
            if got is None:
                remaining -= 1
            elif isinstance(got, BaseException):
                raise got
            else:
                yield got
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for source in sources:
            closer = getattr(source, "aclose", None)
            if closer is not None:
                await closer()
