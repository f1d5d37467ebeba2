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


# A field name is the client's text, and a header value must be visible ASCII: a name with a
# non-Latin-1 character, CR/LF or another control character would fail the response after the
# generation ran. Each name is percent-encoded (reversible, so still reported honestly), long
# names are cut, and the header as a whole is bounded.
IGNORED_NAME_MAX = 100
IGNORED_HEADER_MAX = 2000
_NAME_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F)) - {"%", ","}


def header_safe_name(name: str) -> str:
    """``name`` percent-encoded (UTF-8) outside visible ASCII, ``%`` and ``,``; at most
    ``IGNORED_NAME_MAX`` characters, a cut name ending in ``...``."""
    out: list[str] = []
    size = 0
    for char in name:
        piece = (
            char
            if char in _NAME_SAFE
            else "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
        )
        if size + len(piece) > IGNORED_NAME_MAX - 3:
            out.append("...")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def ignored_header(names: Sequence[str]) -> dict[str, str]:
    """The ``x-pampero-ignored-params`` header listing fields that had no effect, each once,
    made header-safe by ``header_safe_name``; past ``IGNORED_HEADER_MAX`` characters the rest
    is counted (``+3 more``)."""
    unique = list(dict.fromkeys(names))
    if not unique:
        return {}
    shown: list[str] = []
    size = 0
    for i, name in enumerate(unique):
        safe = header_safe_name(name)
        if size + len(safe) + 2 > IGNORED_HEADER_MAX - 12:
            shown.append(f"+{len(unique) - i} more")
            break
        shown.append(safe)
        size += len(safe) + 2
    return {"x-pampero-ignored-params": ", ".join(shown)}


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
