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
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image
from pydantic import ValidationError

from pampero.errors import InvalidRequestError
from pampero.media.codes import INVALID_IMAGE_URL, TOO_MANY_IMAGES
from pampero.media.decode import decode_image, parse_data_uri
from pampero.media.fetch import DEFAULT_MAX_CONCURRENCY, Fetcher, Resolver
from pampero.media.policy import MediaPolicy
from pampero.protocol.messages import (
    ImageDetail,
    ImagePart,
    ImageURL,
    ImageURLPart,
    InputImagePart,
)

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
        self._decodes = asyncio.Semaphore(max_concurrency)

    async def load(
        self,
        part: ImagePart | Mapping[str, Any],
        policy: MediaPolicy,
        *,
        param: str = "image_url",
    ) -> LoadedImage:
        """Fetch or decode the image of one ``image_url``/``input_image`` content part."""
        image_url = _image_url(part, param)
        try:
            data = await self._bytes(image_url.url, policy)
            async with self._decodes:
                decoded = await asyncio.to_thread(
                    decode_image, data, max_pixels=policy.max_pixels, detail=image_url.detail
                )
        except InvalidRequestError as exc:
            raise InvalidRequestError(
                f"Invalid image in '{param}': {exc.message}", param=param, code=exc.code
            ) from None
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
        """Every image of a conversation, in message order, loaded concurrently."""
        found = image_parts(messages)
        if len(found) > policy.max_images:
            raise InvalidRequestError(
                f"The request has {len(found)} images; at most {policy.max_images} are allowed.",
                param="messages",
                code=TOO_MANY_IMAGES,
            )
        if not found:
            return []
        tasks: list[asyncio.Task[LoadedImage]] = []
        try:
            async with asyncio.TaskGroup() as group:
                for param, part in found:
                    tasks.append(group.create_task(self.load(part, policy, param=param)))
        except BaseExceptionGroup as failures:
            raise _first_failure(tasks, failures) from None
        return [task.result() for task in tasks]

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


def _first_failure(
    tasks: list[asyncio.Task[LoadedImage]], failures: BaseExceptionGroup[BaseException]
) -> BaseException:
    """The error of the earliest image, so the client hears about images in order."""
    for task in tasks:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            return error
    return failures.exceptions[0]
