"""CORS: a browser page on a listed origin may call the API with ``fetch`` as the seed documents
do (``POST`` with ``Authorization`` and ``Content-Type: application/json``); any other origin,
and every origin on a server without ``--cors-origin``, gets no CORS header at all."""

from __future__ import annotations

import pytest

from tests.e2e.harness import MODEL_ID

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
APP = "https://app.example"
KEY = "sk-cors-test"


@pytest.fixture(scope="module")
def cors_server(launch):
    with launch(
        "--cors-origin", APP, "--cors-origin", "http://localhost:5173", "--api-key", KEY
    ) as s:
        yield s


def preflight(client, origin, headers="authorization, content-type"):
    return client.options(
        CHAT,
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": headers,
        },
    )


def cors_headers(response):
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def test_a_listed_origin_passes_the_preflight_the_seeds_fetch_needs(cors_server):
    with cors_server.api().http as client:
        response = preflight(client, APP)
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == APP
        assert "POST" in response.headers["access-control-allow-methods"]
        allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert int(response.headers["access-control-max-age"]) > 0
        assert "access-control-allow-credentials" not in response.headers
        assert "Origin" in response.headers["vary"]


def test_a_listed_origins_real_request_and_its_errors_carry_cors_headers(cors_server):
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    with cors_server.api(key=KEY).http as client:
        response = client.post(CHAT, json=body, headers={"origin": APP})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == APP
        assert "x-pampero-ignored-params" in response.headers["access-control-expose-headers"]
    with cors_server.api().http as keyless:  # the page can read why it was refused
        refused = keyless.post(CHAT, json=body, headers={"origin": APP})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == APP


def test_another_origin_gets_nothing(cors_server):
    with cors_server.api().http as client:
        for origin in ("https://evil.example", "https://app.example.evil.example", "null"):
            response = preflight(client, origin)
            assert response.status_code != 204
            assert cors_headers(response) == {}
        real = client.get("/health", headers={"origin": "https://evil.example"})
        assert real.status_code == 200 and cors_headers(real) == {}


def test_without_cors_origins_no_origin_gets_anything(api):
    response = preflight(api.http, APP)
    assert response.status_code != 204
    assert cors_headers(response) == {}
    assert cors_headers(api.http.get("/health", headers={"origin": APP})) == {}
