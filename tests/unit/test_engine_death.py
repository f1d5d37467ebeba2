"""The engine thread dying: the request it was serving hears a 503, ``/health`` says 503, and
every later request is a 503 at once; nothing hangs.

The fault is injected into pampero's real scheduler (over the fake runner): its step raises an
error nothing in the scheduler handles, as a bug or a native crash surfacing as an exception
would. Everything above it (engine thread, hub, serving, routes) is the real thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from pampero.api.app import create_app
from pampero.settings import ModelConfig, Settings
from tests.e2e.harness import check_error

MODEL = "fake"


class InjectedFault(BaseException):
    """Not an ``Exception``: no per-request isolation catches it."""


@pytest.fixture
def client(tmp_path: Any) -> Iterator[TestClient]:
    settings = Settings(
        models=[ModelConfig(id=MODEL, engine="tests.fake_engine:create")],
        home=tmp_path,
        n_ctx=256,
        max_seqs=4,
        n_batch=64,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def kill_engine_at_next_step(client: TestClient) -> None:
    (served,) = list(client.app.state.services.context.hub)  # type: ignore[attr-defined]
    scheduler = served.engine._scheduler

    def step() -> None:
        raise InjectedFault("injected engine fault")

    scheduler._step_all = step


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def test_a_dead_engine_is_a_503_for_the_request_health_and_what_follows(client) -> None:
    assert client.get("/health").status_code == 200
    kill_engine_at_next_step(client)
    error = check_error(client.post("/v1/chat/completions", json=chat()), 503)
    assert "engine" in error["message"]
    health = client.get("/health")
    assert health.status_code == 503
    for _ in range(3):
        check_error(client.post("/v1/chat/completions", json=chat()), 503)
    check_error(client.post("/v1/completions", json={"model": MODEL, "prompt": "a"}), 503)


def test_a_stream_whose_engine_dies_ends_with_an_in_band_error(client) -> None:
    kill_engine_at_next_step(client)
    body = chat() | {"stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        raw = b"".join(response.iter_raw())
    if response.status_code == 200:  # the role chunk went out before the step failed
        assert b'"error"' in raw and raw.endswith(b"data: [DONE]\n\n"), raw[-300:]
    else:
        assert response.status_code == 503, raw
    assert client.get("/health").status_code == 503
