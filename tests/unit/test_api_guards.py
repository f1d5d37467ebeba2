"""``BodyLimit``, ``BearerAuth`` and the OpenAI error bodies, in process over a tiny app."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pampero.api import middleware
from pampero.api.errors import on_http_error, on_pampero_error, on_unexpected
from pampero.api.middleware import BearerAuth, BodyLimit
from pampero.errors import ContextLengthExceeded, Overloaded, PamperoError

KEYS = ["sk-first", "sk-second-longer-key", "sk-3"]
LIMIT = 1024


def build(keys: Sequence[str] = (), max_bytes: int = LIMIT) -> tuple[Starlette, list[int]]:
    """The production middleware stack and error handlers around a few test routes."""
    seen: list[int] = []

    async def echo(request: Request) -> Response:
        body = await request.body()
        seen.append(len(body))
        return JSONResponse({"size": len(body)})

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def busy(_request: Request) -> Response:
        raise Overloaded("the queue is full", retry_after=3)

    async def too_long(_request: Request) -> Response:
        raise ContextLengthExceeded("too long", param="messages")

    async def crash(_request: Request) -> Response:
        raise RuntimeError("secret internals")

    app = Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/health", health),
            Route("/busy", busy),
            Route("/too-long", too_long),
            Route("/crash", crash),
        ],
        middleware=[
            Middleware(BearerAuth, keys=list(keys)),
            Middleware(BodyLimit, max_bytes=max_bytes),
        ],
        exception_handlers={
            PamperoError: on_pampero_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )
    return app, seen


def call(app: Starlette, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


async def chunks(total: int, size: int = 300) -> AsyncIterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


# -- BodyLimit -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, LIMIT])
def test_bodies_up_to_the_limit_pass(size: int) -> None:
    app, seen = build()
    assert call(app, "POST", "/echo", content=b"x" * size).json() == {"size": size}
    assert call(app, "POST", "/echo", content=chunks(size)).json() == {"size": size}
    assert seen == [size, size]


def test_a_declared_oversize_body_is_refused_before_the_app_runs() -> None:
    app, seen = build()
    response = call(app, "POST", "/echo", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    error = error_of(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
    assert str(LIMIT) in error["message"]
    assert seen == []


def test_a_streamed_oversize_body_is_refused_while_it_arrives() -> None:
    app, seen = build()
    response = call(app, "POST", "/echo", content=chunks(LIMIT * 3))
    assert "content-length" not in response.request.headers  # chunked: nothing declared
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    assert seen == []


# -- BearerAuth ----------------------------------------------------------------------------------


def test_without_configured_keys_everything_is_open() -> None:
    app, _ = build(keys=())
    assert call(app, "POST", "/echo", content=b"hi").status_code == 200


@pytest.mark.parametrize("key", KEYS)
def test_any_configured_key_is_accepted(key: str) -> None:
    app, _ = build(KEYS)
    response = call(app, "POST", "/echo", content=b"hi", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200


def test_lowercase_scheme_is_accepted() -> None:
    app, _ = build(KEYS)
    headers = {"authorization": f"bearer {KEYS[0]}"}
    assert call(app, "POST", "/echo", content=b"", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer ",
        "Bearer sk-firs",
        "Bearer sk-first-and-more",
        "Bearer SK-FIRST",
        f"Basic {KEYS[0]}",
        KEYS[0],
    ],
)
def test_a_missing_or_wrong_key_is_a_401_in_openai_shape(header: str | None) -> None:
    app, seen = build(KEYS)
    headers = {"authorization": header} if header is not None else {}
    response = call(app, "POST", "/echo", content=b"hi", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = error_of(response)
    assert (error["type"], error["code"], error["param"]) == (
        "authentication_error",
        "invalid_api_key",
        None,
    )
    assert seen == []


def test_health_needs_no_key_but_every_other_method_and_path_does() -> None:
    app, _ = build(KEYS)
    assert call(app, "GET", "/health").json() == {"status": "ok"}
    # A listed origin's CORS preflight is answered before auth (api/cors.py); a bare OPTIONS,
    # a wrong method or an unknown path must not tell a keyless caller which routes exist.
    for method, path in (("OPTIONS", "/echo"), ("GET", "/echo"), ("GET", "/nowhere")):
        assert call(app, method, path).status_code == 401


def test_every_key_is_compared_even_after_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(middleware.hmac, "compare_digest", spy)
    app, _ = build(KEYS)
    call(app, "GET", "/busy", headers={"authorization": f"Bearer {KEYS[0]}"})
    assert compared == [k.encode() for k in KEYS]


# -- error bodies --------------------------------------------------------------------------------


def test_overloaded_is_a_429_with_retry_after() -> None:
    response = call(build()[0], "GET", "/busy")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    error = error_of(response)
    assert (error["type"], error["code"], error["message"]) == (
        "rate_limit_error",
        "server_overloaded",
        "the queue is full",
    )


def test_a_context_length_error_names_its_param_and_code() -> None:
    response = call(build()[0], "GET", "/too-long")
    assert response.status_code == 400
    assert error_of(response) == {
        "message": "too long",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }


@pytest.mark.parametrize(
    ("method", "path", "status", "kind", "code"),
    [
        ("GET", "/nowhere", 404, "not_found_error", "not_found"),
        ("DELETE", "/health", 405, "invalid_request_error", "method_not_allowed"),
    ],
)
def test_routing_errors_use_the_openai_shape(
    method: str, path: str, status: int, kind: str, code: str
) -> None:
    response = call(build()[0], method, path)
    assert response.status_code == status
    error = error_of(response)
    assert (error["type"], error["code"]) == (kind, code)
    assert path in error["message"]


def test_an_unexpected_error_is_a_500_that_hides_its_details() -> None:
    response = call(build()[0], "GET", "/crash")
    assert response.status_code == 500
    error = error_of(response)
    assert error["type"] == "server_error"
    assert "secret internals" not in error["message"]
