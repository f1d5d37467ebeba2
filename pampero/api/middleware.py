"""Pure-ASGI guards that run before any route: header count cap, request size cap and
bearer-key auth. (The size of the request head is capped by the HTTP parser: ``api/server.py``.)"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pampero.api.errors import body_of
from pampero.errors import HeadersTooLarge, PamperoError, PayloadTooLarge
from pampero.settings import Settings
from pampero.web import PUBLIC_PATHS, PUBLIC_PREFIX

OPENAPI_PATH = "/openapi.json"
METRICS_PATH = "/metrics"
# The browser pages, their assets and the API's description are public: the page asks for the
# key when the API answers 401 (``pampero/web``).
_OPEN_PATHS = frozenset({"/health", OPENAPI_PATH, *PUBLIC_PATHS})


async def reply(
    send: Send, status: int, body: Mapping[str, object], headers: list[tuple[bytes, bytes]]
) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class HeaderLimit:
    """Answers 431 to a request with more than ``max_count`` headers, or whose request line and
    headers pass ``max_bytes``, before anything reads them (auth included).

    The HTTP parser already refuses a head that is still incomplete past ``max_bytes``
    (``api/server.py``), which bounds its memory; a head that arrived whole in one read is
    measured here."""

    def __init__(self, app: ASGIApp, max_count: int, max_bytes: int) -> None:
        self.app = app
        self.max_count = max_count
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        size += sum(len(key) + len(value) + 4 for key, value in headers)  # ": " and CRLF
        error = None
        if len(headers) > self.max_count:
            error = HeadersTooLarge(
                f"the request has {len(headers)} headers; at most {self.max_count} are accepted"
            )
        elif size > self.max_bytes:
            error = HeadersTooLarge(
                f"the request line and headers exceed the {self.max_bytes}-byte limit"
            )
        if error is not None:
            await reply(send, error.status_code, error.to_body(), [(b"connection", b"close")])
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Answers 413 when the declared or the streamed request body passes ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._too_large(send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"request body is larger than the {self.max_bytes}-byte limit"

    async def _too_large(self, send: Send) -> None:
        error = PayloadTooLarge(self._message())
        await reply(send, error.status_code, error.to_body(), [(b"connection", b"close")])


class BearerAuth:
    """Requires ``Authorization: Bearer <key>`` with one of ``keys`` on every path but /health,
    whatever the method: a CORS preflight from a listed origin is answered before this layer
    (``api/cors.py``), so a keyless ``OPTIONS`` learns nothing about the routes.

    Every configured key is compared, in constant time, so timing tells nothing about which
    key or how much of it matched."""

    def __init__(
        self, app: ASGIApp, keys: list[str], open_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or is_open_path(scope["path"], self.open_paths):
            await self.app(scope, receive, send)
            return
        if self._authorised(scope):
            await self.app(scope, receive, send)
            return
        body = body_of(
            401,
            "missing or invalid API key: send 'Authorization: Bearer <key>'",
            code="invalid_api_key",
        )
        await reply(send, 401, body, [(b"www-authenticate", b"Bearer")])

    def _authorised(self, scope: Scope) -> bool:
        header = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(token, key)
        return matched and scheme.lower() == b"bearer"


def is_open_path(path: str, also: frozenset[str] = frozenset()) -> bool:
    """Whether ``path`` is served without a key: /health, the pages, their assets, the API's
    description, and the paths in ``also`` (``open_paths``: /metrics with ``metrics_public``).
    Any other auth layer should ask the same question."""
    return path in _OPEN_PATHS or path in also or path.startswith(PUBLIC_PREFIX)


def open_paths(settings: Settings) -> frozenset[str]:
    """The paths a server's settings open beyond the built-in ones."""
    return frozenset({METRICS_PATH}) if settings.metrics_public else frozenset()


__all__ = [
    "BearerAuth",
    "BodyLimit",
    "HeaderLimit",
    "PamperoError",
    "is_open_path",
    "open_paths",
    "reply",
]
