"""``metrics_public`` on a server with accounts, in process (SQLite, the fake engine): /metrics
opens without a key, every other keyed route still answers 401, and without the setting
/metrics needs a key as before."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from pampero.api.app import create_app
from pampero.api.middleware import is_open_path
from pampero.settings import ModelConfig, Settings


def settings(home: Path, **fields: object) -> Settings:
    return Settings(
        models=[ModelConfig(id="fake", engine="tests.fake_engine:create")],
        home=home,
        n_ctx=256,
        max_seqs=4,
        n_batch=64,
        accounts=True,
        **fields,
    )


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("metrics-public")
    with TestClient(create_app(settings(home, metrics_public=True))) as client:
        yield client


def test_metrics_open_and_every_other_keyed_route_stays_closed(public: TestClient) -> None:
    metrics = public.get("/metrics")
    assert metrics.status_code == 200 and "vllm:num_requests_running" in metrics.text
    checked = 0
    for route in public.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, Route) or route.path == "/metrics" or is_open_path(route.path):
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            response = public.request(method, path, json={})
            assert response.status_code == 401, (method, route.path, response.status_code)
            checked += 1
    assert checked >= 20, checked


def test_without_the_setting_metrics_need_a_key(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path))) as client:
        assert client.get("/metrics").status_code == 401
