"""The edge's newer layers in process: CORS, the header cap, the drain gate and the server's
drain ticks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pampero.api.cors import Cors
from pampero.api.lifecycle import DrainGate, Lifecycle
from pampero.api.middleware import HeaderLimit
from pampero.api.server import DrainingServer, StartupErrorFilter
from pampero.settings import Settings, parse_origin

APP = "https://app.example"


async def hello(_request: Request) -> Response:
    return JSONResponse({"ok": True})


def build(origins: Sequence[str] = (), lifecycle: Lifecycle | None = None) -> Starlette:
    return Starlette(
        routes=[Route("/v1/x", hello, methods=["GET", "POST"]), Route("/metrics", hello)],
        middleware=[
            Middleware(HeaderLimit, max_count=20, max_bytes=2048),
            Middleware(Cors, origins=list(origins)),
            Middleware(DrainGate, lifecycle=lifecycle or Lifecycle(30.0)),
        ],
    )


def call(app: Starlette, method: str, path: str, headers: dict[str, str] | list[tuple[str, str]]):
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(go())


PREFLIGHT = {
    "origin": APP,
    "access-control-request-method": "POST",
    "access-control-request-headers": "Authorization, Content-Type, x-stainless-os",
}


def test_preflight_for_a_listed_origin() -> None:
    response = call(build([APP]), "OPTIONS", "/v1/x", PREFLIGHT)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-headers"] == (
        "authorization, content-type, x-stainless-os"
    )


def test_a_requested_header_that_is_not_a_header_name_is_not_echoed() -> None:
    headers = {**PREFLIGHT, "access-control-request-headers": "content-type, bad name, a\x7fb"}
    response = call(build([APP]), "OPTIONS", "/v1/x", headers)
    assert response.headers["access-control-allow-headers"] == "content-type"


@pytest.mark.parametrize("origins", [[], ["https://other.example"]])
def test_preflight_for_any_other_origin_gets_no_cors_headers(origins: list[str]) -> None:
    response = call(build(origins), "OPTIONS", "/v1/x", PREFLIGHT)
    assert response.status_code == 405
    assert not [k for k in response.headers if k.startswith("access-control-")]


def test_star_allows_every_origin_by_echoing_it() -> None:
    response = call(build(["*"]), "GET", "/v1/x", {"origin": "http://localhost:5173"})
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "origin" in response.headers["vary"].lower()


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://App.Example", "https://app.example"),
        ("http://localhost:5173/", "http://localhost:5173"),
        ("*", "*"),
    ],
)
def test_origins_are_normalised(given: str, stored: str) -> None:
    assert parse_origin(given) == stored
    assert Settings(cors_origins=[given]).cors_origins == [stored]


@pytest.mark.parametrize(
    "bad", ["app.example", "https://app.example/path", "ftp://x", "https://u@x", "https://x:99999"]
)
def test_malformed_origins_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="CORS origin"):
        Settings(cors_origins=[bad])


def test_too_many_or_too_large_headers_are_431() -> None:
    many = [(f"x-{i}", "1") for i in range(25)]
    response = call(build(), "GET", "/v1/x", many)
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "request_headers_too_large"
    big = call(build(), "GET", "/v1/x", {"x-big": "a" * 3000})
    assert big.status_code == 431
    assert call(build(), "GET", "/v1/x", {"x-fine": "a" * 100}).status_code == 200


def test_the_drain_gate_refuses_new_requests_but_not_metrics() -> None:
    lifecycle = Lifecycle(30.0)
    app = build(lifecycle=lifecycle)
    assert call(app, "GET", "/v1/x", {}).status_code == 200
    lifecycle.start_drain()
    refused = call(app, "GET", "/v1/x", {})
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert refused.json()["error"] == {
        "message": "the server is shutting down; retry shortly",
        "type": "service_unavailable",
        "param": None,
        "code": "server_shutting_down",
    }
    assert call(app, "GET", "/metrics", {}).status_code == 200
    assert lifecycle.in_flight == 0


def _server(lifecycle: Lifecycle) -> DrainingServer:
    return DrainingServer(uvicorn.Config(build(lifecycle=lifecycle)), lifecycle)


def test_the_first_signal_drains_and_the_server_exits_once_nothing_is_in_flight() -> None:
    lifecycle = Lifecycle(30.0)
    server = _server(lifecycle)
    lifecycle.in_flight = 1
    assert asyncio.run(server.on_tick(1)) is False
    server.handle_exit(15, None)
    assert lifecycle.draining and not server.should_exit
    assert asyncio.run(server.on_tick(2)) is False  # still one in flight
    lifecycle.in_flight = 0
    assert asyncio.run(server.on_tick(3)) is True
    assert server._captured_signals == []  # not raised again: the exit status stays 0


def test_a_second_signal_stops_waiting() -> None:
    lifecycle = Lifecycle(30.0)
    server = _server(lifecycle)
    lifecycle.in_flight = 1
    server.handle_exit(15, None)
    server.handle_exit(15, None)
    assert asyncio.run(server.on_tick(1)) is True


def test_past_the_deadline_the_callbacks_end_what_runs() -> None:
    lifecycle = Lifecycle(0.0)
    ended: list[bool] = []

    async def end() -> None:
        ended.append(True)

    lifecycle.on_deadline.append(end)
    server = _server(lifecycle)
    lifecycle.in_flight = 1
    server.handle_exit(15, None)

    async def ticks() -> list[bool]:
        return [await server.on_tick(i) for i in range(3)]

    assert asyncio.run(ticks()) == [False, False, False]
    assert ended == [True]  # once


# -- an SSE response whose client left before the first byte ---------------------------------------


class _Owned:
    """A chunk stream that owns something (engine requests): only ``aclose`` releases it."""

    def __init__(self) -> None:
        self.closed = False

    def __aiter__(self) -> _Owned:
        return self

    async def __anext__(self) -> dict[str, object]:
        await asyncio.sleep(3600)  # never produces: the client leaves first
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


def test_an_event_stream_whose_client_left_at_once_closes_its_chunks() -> None:
    from pampero.api.sse import EventStreamResponse

    chunks = _Owned()
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        await asyncio.sleep(3600)  # the failed write, not this, notices the client left
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)
        raise ConnectionResetError("the client is gone")  # before the first chunk

    async def go() -> None:
        response = EventStreamResponse(chunks)
        await asyncio.wait_for(response({"type": "http"}, receive, send), timeout=30)  # type: ignore[arg-type]

    asyncio.run(go())
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert chunks.closed


def _report(text: str) -> str:
    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, text, None, None)
    assert StartupErrorFilter().filter(record)
    return record.getMessage()


def test_a_failed_start_from_pampero_s_own_error_is_its_message_alone():
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\n'
    own = trace + "pampero.errors.EngineError: llama.cpp could not load m.gguf\n"
    assert _report(own) == "pampero could not start: llama.cpp could not load m.gguf"
    bug = trace + "KeyError: 'threads'\n"  # not ours: a bug keeps its traceback
    assert _report(bug) == bug
    assert _report("Application startup failed. Exiting.") == "Application startup failed. Exiting."
