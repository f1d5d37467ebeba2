"""Cross-origin requests from browser pages, for the origins the operator lists (none by default).

``--cors-origin https://app.example`` (repeatable; ``*`` for any origin) lets a page on that
origin call the API with ``fetch``, as the seed documents show it: ``POST`` with
``Authorization: Bearer ...`` and ``Content-Type: application/json``. Such a request is
"non-simple", so the browser first sends a preflight ``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``; for a listed origin the answer is a 204 naming that origin,
the methods, the requested headers and how long to cache it. Responses to the real request then
carry ``Access-Control-Allow-Origin`` and expose pampero's own headers to the page.

Anything else gets nothing: a preflight from an unlisted origin goes on to the routes like any
``OPTIONS`` request (a 405 without CORS headers), so the browser blocks the call. No cookies are
involved (the key travels in a header), so credentials are never allowed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pampero.settings import ANY_ORIGIN

ALLOW_METHODS = "GET, POST, OPTIONS"
EXPOSE_HEADERS = (
    "x-pampero-ignored-params, x-pampero-schema-checked-after, x-pampero-schema-attempts, "
    "retry-after"
)
MAX_AGE_S = 600
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)


class Cors:
    """The CORS layer (see the module docstring); with no origins it passes everything on."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.any = ANY_ORIGIN in origins
        self.origins = frozenset(origins)

    def allows(self, origin: str) -> bool:
        return self.any or origin in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.any or self.origins):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or not self.allows(origin):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, headers, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["access-control-allow-origin"] = origin
                out["access-control-expose-headers"] = EXPOSE_HEADERS
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _preflight(self, origin: str, headers: Headers, send: Send) -> None:
        requested = headers.get("access-control-request-headers", "")
        names = [name.strip().lower() for name in requested.split(",") if name.strip()]
        allowed = ", ".join(name for name in names if _TOKEN.match(name))
        response = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-max-age", str(MAX_AGE_S).encode()),
            (
                b"vary",
                b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
            (b"content-length", b"0"),
        ]
        if allowed:
            response.append((b"access-control-allow-headers", allowed.encode("latin-1")))
        await send({"type": "http.response.start", "status": 204, "headers": response})
        await send({"type": "http.response.body", "body": b""})
