"""The one place where exceptions become HTTP responses in OpenAI's error shape."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pampero.errors import PamperoError

log = logging.getLogger(__name__)

_HTTP_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
}


def error_response(error: PamperoError) -> JSONResponse:
    headers = error.headers() or None
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=headers)


def body_of(status: int, message: str, *, code: str | None = None) -> dict[str, object]:
    return {
        "error": {
            "message": message,
            "type": _HTTP_TYPES.get(status, "server_error"),
            "param": None,
            "code": code,
        }
    }


async def on_pampero_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PamperoError)
    if exc.status_code >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
        code = "not_found"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
        code = "method_not_allowed"
    else:
        message, code = str(exc.detail), None
    return JSONResponse(body_of(exc.status_code, message, code=code), status_code=exc.status_code)


async def on_unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(
        body_of(500, "internal server error; the server log has the details"), status_code=500
    )
