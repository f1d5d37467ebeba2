"""The routes of the browser pages and their assets.

The pages are static files: the playground is plain HTML, CSS and JavaScript modules
(``static/playground/``; no build step), the API docs a small page over the vendored Swagger UI
bundle (``static/swagger/``, with its licence). Each page carries a Content-Security-Policy
that allows only this origin (images also ``data:``/``blob:``, for pasted pictures), so the
pages can neither load nor send anything elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
PUBLIC_PREFIX = "/static/"
PLAYGROUND_PATHS = ("/", "/playground")
DOCS_PATH = "/docs"
PUBLIC_PATHS = frozenset({*PLAYGROUND_PATHS, DOCS_PATH})

# Swagger UI sets inline styles on its elements, hence 'unsafe-inline' for styles only.
POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)
HEADERS = {
    "content-security-policy": POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _page(name: str) -> Response:
    return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers=HEADERS)


async def playground(_request: Request) -> Response:
    return _page("playground/index.html")


async def api_docs(_request: Request) -> Response:
    return _page("swagger/docs.html")


def web_routes() -> list[BaseRoute]:
    return [
        *(Route(path, playground, methods=["GET"]) for path in PLAYGROUND_PATHS),
        Route(DOCS_PATH, api_docs, methods=["GET"]),
        Mount(PUBLIC_PREFIX.rstrip("/"), app=StaticFiles(directory=STATIC), name="static"),
    ]
