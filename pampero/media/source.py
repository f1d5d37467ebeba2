"""The images of a chat request, from content parts to RGB pixels.

``ImageSource`` is a long-lived service (build it once, in the app's lifespan): it owns the
fetcher's connection slots and bounds concurrent decodes. Per request::

    source = ImageSource(max_concurrency=8)
    images = await source.collect_images(request.messages, policy)

``collect_images`` walks every message in order (images in earlier turns count), refuses the
request if it holds more than ``policy.max_images`` images, then loads them concurrently and
returns them in message order. It takes the protocol models (``request.messages``) or their
plain-dict form (``model_dump()``). The part shapes it accepts::

    {"type": "image_url", "image_url": {"url": "https://...", "detail": "low"}}
    {"type": "image_url", "image_url": "data:image/png;base64,..."}
    {"type": "input_image", "image_url": "data:image/jpeg;base64,..."}

Every failure is an ``InvalidRequestError`` (400) whose ``param`` names the part
(``messages[2].content[1].image_url``) and whose ``code`` is one of ``pampero.media.codes``.
Decoding runs in worker threads; nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import Image
from pydantic import ValidationError

from pampero.errors import InvalidRequestError
from pampero.media.codes import IMAGE_TOO_LARGE, INVALID_IMAGE_URL, TOO_MANY_IMAGES
from pampero.media.decode import decode_image, image_size, parse_data_uri
from pampero.media.fetch import DEFAULT_MAX_CONCURRENCY, Fetcher, Resolver
from pampero.media.policy import MediaPolicy
from pampero.protocol.messages import (
    ImageDetail,
    ImagePart,
    ImageURL,
    ImageURLPart,
    InputImagePart,
)

T = TypeVar("T")

_PART_MODELS: dict[str, type[ImagePart]] = {
    "image_url": ImageURLPart,
    "input_image": InputImagePart,
}


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """One decoded image of a request."""

    image: Image.Image
    """RGB, upright; at most 512 px on its long side when ``detail`` is ``low``."""
    format: str
    """``PNG``, ``JPEG``, ``WEBP`` or ``GIF``, as sniffed from the bytes."""
    original_size: tuple[int, int]
    """Width and height as stored, before orientation and resizing."""
    detail: ImageDetail
    param: str
    """Where the image was in the request: ``messages[0].content[1].image_url``."""

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


class ImageSource:
    """Loads images from content parts under a ``MediaPolicy`` (see the module docstring)."""

    def __init__(
        self,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._fetcher = Fetcher(
            max_concurrency=max_concurrency, resolver=resolver, ssl_context=ssl_context
        )
        # Decoding is CPU-bound and holds a full-size image while it runs: more decodes at once
        # than cores only adds peak memory.
        self._decodes = asyncio.Semaphore(max(1, min(max_concurrency, os.cpu_count() or 1)))

    async def load(
        self,
        part: ImagePart | Mapping[str, Any],
        policy: MediaPolicy,
        *,
        param: str = "image_url",
    ) -> LoadedImage:
        """Fetch or decode the image of one ``image_url``/``input_image`` content part."""
        image_url = _image_url(part, param)
        with _naming(param):
            data = await self._bytes(image_url.url, policy)
        return await self._decode(data, image_url, policy, param)

    async def _decode(
        self, data: bytes, image_url: ImageURL, policy: MediaPolicy, param: str
    ) -> LoadedImage:
        with _naming(param):
            async with self._decodes:
                decoded = await asyncio.to_thread(
                    decode_image,
                    data,
                    max_pixels=policy.max_pixels,
                    detail=image_url.detail,
                    max_side=policy.max_side,
                )
        return LoadedImage(
            image=decoded.image,
            format=decoded.format,
            original_size=decoded.original_size,
            detail=image_url.detail,
            param=param,
        )

    async def collect_images(
        self, messages: Sequence[Any], policy: MediaPolicy
    ) -> list[LoadedImage]:
        """Every image of a conversation, in message order, loaded concurrently.

        Every image's bytes come first; their headers together must stay within
        ``policy.max_request_pixels`` before any is decoded."""
        found = image_parts(messages)
        if len(found) > policy.max_images:
            raise InvalidRequestError(
                f"The request has {len(found)} images; at most {policy.max_images} are allowed.",
                param="messages",
                code=TOO_MANY_IMAGES,
            )
        if not found:
            return []
        urls = [(param, _image_url(part, param)) for param, part in found]
        payloads = await _all_in_order(
            [self._named_bytes(url.url, policy, param) for param, url in urls]
        )
        _check_request_pixels(urls, payloads, policy)
        return await _all_in_order(
            [
                self._decode(data, url, policy, param)
                for (param, url), data in zip(urls, payloads, strict=True)
            ]
        )

    async def _named_bytes(self, url: str, policy: MediaPolicy, param: str) -> bytes:
        with _naming(param):
            return await self._bytes(url, policy)

    async def _bytes(self, url: str, policy: MediaPolicy) -> bytes:
        scheme = url.partition(":")[0].lower() if ":" in url else ""
        if scheme == "data":
            return parse_data_uri(url, policy.max_bytes)
        if scheme in ("http", "https"):
            return await self._fetcher.fetch(url, policy)
        raise InvalidRequestError(
            "The image URL's scheme must be http, https or data.", code=INVALID_IMAGE_URL
        )


def image_parts(messages: Sequence[Any]) -> list[tuple[str, ImagePart | Mapping[str, Any]]]:
    """``(param, part)`` for every image part of ``messages``, in order."""
    found: list[tuple[str, ImagePart | Mapping[str, Any]]] = []
    for i, message in enumerate(messages):
        if isinstance(message, Mapping):
            content = message.get("content")
        else:
            content = getattr(message, "content", None)
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, ImagePart) or (
                isinstance(part, Mapping) and part.get("type") in _PART_MODELS
            ):
                found.append((f"messages[{i}].content[{j}].image_url", part))
    return found


def _image_url(part: ImagePart | Mapping[str, Any], param: str) -> ImageURL:
    if isinstance(part, ImagePart):
        return part.image_url
    model = _PART_MODELS.get(str(part.get("type")))
    if model is not None:
        try:
            return model.model_validate(part).image_url
        except ValidationError:
            pass
    raise InvalidRequestError(
        f"'{param}' is not a valid image part: it needs an 'image_url' with a 'url'.",
        param=param,
        code=INVALID_IMAGE_URL,
    )


@contextlib.contextmanager
def _naming(param: str) -> Iterator[None]:
    """An image's error, told with where the image was in the request."""
    try:
        yield
    except InvalidRequestError as exc:
        raise InvalidRequestError(
            f"Invalid image in '{param}': {exc.message}", param=param, code=exc.code
        ) from None


def _check_request_pixels(
    urls: list[tuple[str, ImageURL]], payloads: list[bytes], policy: MediaPolicy
) -> None:
    total = 0
    for (param, _), data in zip(urls, payloads, strict=True):
        with _naming(param):
            width, height = image_size(data)
        total += width * height
    if total > policy.max_request_pixels:
        raise InvalidRequestError(
            f"The request's images have {total:,} pixels together; the limit is "
            f"{policy.max_request_pixels:,}.",
            param="messages",
            code=IMAGE_TOO_LARGE,
        )


async def _all_in_order(work: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``work`` concurrently; the results in order, or the earliest item's error."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            for item in work:
                tasks.append(group.create_task(item))
    except BaseExceptionGroup as failures:
        raise _first_failure(tasks, failures) from None
    return [task.result() for task in tasks]


def _first_failure(
    tasks: Sequence[asyncio.Task[Any]], failures: BaseExceptionGroup[BaseException]
) -> BaseException:
    """The error of the earliest image, so the client hears about images in order."""
    for task in tasks:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            return error
    return failures.exceptions[0]
