"""Pure-ASGI guards that run before any route: request size cap and bearer-key auth."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pampero.api.errors import body_of
from pampero.errors import PamperoError, PayloadTooLarge

_OPEN_PATHS = frozenset({"/health"})


async def _reply(
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
        await _reply(send, error.status_code, error.to_body(), [(b"connection", b"close")])


class BearerAuth:
    """Requires ``Authorization: Bearer <key>`` with one of ``keys`` on every path but /health.

    Every configured key is compared, in constant time, so timing tells nothing about which
    key or how much of it matched."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
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
        await _reply(send, 401, body, [(b"www-authenticate", b"Bearer")])

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


__all__ = ["BearerAuth", "BodyLimit", "PamperoError"]
