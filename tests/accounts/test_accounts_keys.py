"""Keys end to end, on SQLite and PostgreSQL, against two real servers sharing the database:
the ``pampero keys`` round trip, revocation seen by every process within a second, the admin
API, ``/v1/key`` and ``/v1/usage``, model globs, priority, the parallel and tpm limits, and no
secret in any log line."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from tests.accounts.conftest import Pair, counters, create, keys_cli
from tests.e2e import sse


def chat(server_url: str, secret: str | None, **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "model": "fake",
        "messages": [{"role": "user", "content": "hola"}],
        "max_tokens": 3,
        **fields,
    }
    headers = {"authorization": f"Bearer {secret}"} if secret else {}
    return httpx.post(f"{server_url}/v1/chat/completions", json=body, headers=headers, timeout=60)


def get(server_url: str, path: str, secret: str, **params: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {secret}"}
    return httpx.get(f"{server_url}{path}", headers=headers, params=params, timeout=30)


def test_the_cli_round_trip(pair: Pair) -> None:
    key, secret = create(pair.url, "--name", "equipo-datos", "--rpm", "50", "--priority", "2")
    assert secret.startswith("sk-pam-") and len(secret) > 40
    assert key["prefix"] == secret[: len(key["prefix"])] and key["status"] == "active"
    listed = keys_cli(pair.url, "list")
    assert key["prefix"] in listed.stdout and secret not in listed.stdout
    listed_json = json.loads(keys_cli(pair.url, "list", "--json").stdout)["data"]
    assert [k["id"] for k in listed_json].count(key["id"]) == 1
    shown = json.loads(keys_cli(pair.url, "show", key["prefix"], "--json").stdout)["data"]
    assert shown["id"] == key["id"] and shown["rpm"] == 50 and shown["name"] == "equipo-datos"
    assert "secret_hash" not in shown

    response = chat(pair.a.url, secret)
    assert response.status_code == 200, response.text
    assert response.headers["x-ratelimit-limit-requests"] == "50"
    assert response.headers["x-ratelimit-remaining-requests"] == "49"
    assert response.headers["x-ratelimit-reset-requests"].endswith("s")
    assert chat(pair.b.url, secret).headers["x-ratelimit-remaining-requests"] == "48"

    rotated = json.loads(
        keys_cli(pair.url, "rotate", key["id"], "--overlap", "1h", "--json").stdout
    )
    new_secret = rotated["key"]
    assert new_secret != secret and rotated["data"]["prefix"] == new_secret[: len(key["prefix"])]
    assert chat(pair.a.url, new_secret).status_code == 200
    assert chat(pair.b.url, secret).status_code == 200  # the old one, within its overlap
    again = json.loads(keys_cli(pair.url, "rotate", key["id"], "--json").stdout)["key"]
    time.sleep(0.6)  # the auth cache's half second
    assert chat(pair.a.url, new_secret).status_code == 401  # no overlap this time
    assert chat(pair.a.url, again).status_code == 200

    disabled = json.loads(keys_cli(pair.url, "disable", key["id"], "--json").stdout)["data"]
    assert disabled["status"] == "disabled"
    time.sleep(0.6)
    refused = chat(pair.b.url, again)
    assert refused.status_code == 401
    keys_cli(pair.url, "enable", key["id"])
    time.sleep(0.6)
    assert chat(pair.b.url, again).status_code == 200

    keys_cli(pair.url, "revoke", key["id"])
    shown = json.loads(keys_cli(pair.url, "show", key["id"], "--json").stdout)["data"]
    assert shown["status"] == "revoked"
    time.sleep(0.6)
    assert chat(pair.a.url, again).status_code == 401
    out = keys_cli(pair.url, "reconcile").stdout
    assert "0 counter(s) corrected" in out

    missing = keys_cli(pair.url, "show", "key_nope", check=False)
    assert missing.returncode == 1 and "no API key matches" in missing.stdout


def test_a_revoked_key_is_refused_by_every_process_within_one_second(pair: Pair) -> None:
    key, secret = create(pair.url)
    for server in pair.servers:  # both processes know (and cache) the key
        assert chat(server.url, secret).status_code == 200
        assert get(server.url, "/v1/models", secret).status_code == 200
    keys_cli(pair.url, "revoke", key["prefix"])
    revoked_at = time.monotonic()
    refused: dict[str, float] = {}
    while len(refused) < 2 and time.monotonic() - revoked_at < 3:
        for server in pair.servers:
            if (
                server.url not in refused
                and get(server.url, "/v1/models", secret).status_code == 401
            ):
                refused[server.url] = time.monotonic() - revoked_at
        time.sleep(0.02)
    assert len(refused) == 2 and max(refused.values()) <= 1.0, refused
    for server in pair.servers:
        response = chat(server.url, secret)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_the_admin_api_and_who_may_call_what(pair: Pair) -> None:
    _admin, admin_secret = create(pair.url, "--admin", "--name", "ops")
    headers = {"authorization": f"Bearer {admin_secret}"}
    made = httpx.post(
        f"{pair.a.url}/admin/keys",
        json={
            "name": "cliente",
            "rpm": 10,
            "budget": 1.5,
            "budget_reset": "monthly",
            "models": ["fake"],
            "expires": "30d",
        },
        headers=headers,
    )
    assert made.status_code == 201, made.text
    key, secret = made.json()["data"], made.json()["key"]
    assert (
        key["budget"] == 1.5
        and key["budget_reset"] == "monthly"
        and key["expires_at"] > time.time()
    )
    listed = httpx.get(f"{pair.b.url}/admin/keys", headers=headers).json()["data"]
    assert key["id"] in {k["id"] for k in listed}
    assert all("hash" not in json.dumps(k) and secret not in json.dumps(k) for k in listed)
    bad = httpx.post(f"{pair.a.url}/admin/keys", json={"rpm": -1}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
    unknown = httpx.post(f"{pair.a.url}/admin/keys", json={"colour": "red"}, headers=headers)
    assert unknown.status_code == 400

    refused = chat(pair.a.url, admin_secret)
    assert refused.status_code == 403 and "admin keys cannot call inference" in refused.text
    assert get(pair.a.url, "/admin/keys", secret).status_code == 403
    assert chat(pair.a.url, secret).status_code == 200

    revoked = httpx.delete(f"{pair.a.url}/admin/keys/{key['id']}", headers=headers)
    assert revoked.status_code == 200 and revoked.json()["data"]["status"] == "revoked"
    time.sleep(0.6)
    assert chat(pair.b.url, secret).status_code == 401
    assert httpx.get(f"{pair.a.url}/health").status_code == 200  # open, no key
    assert httpx.get(f"{pair.a.url}/v1/models").status_code == 401


def test_key_and_usage_routes(pair: Pair) -> None:
    key, secret = create(
        pair.url, "--name", "uso", "--budget", "1", "--budget-reset", "daily", "--rpm", "30"
    )
    assert chat(pair.a.url, secret, max_tokens=4).status_code == 200
    # A stream without include_usage: the client sees no usage, the ledger the real one.
    with httpx.stream(
        "POST",
        f"{pair.b.url}/v1/chat/completions",
        json={
            "model": "fake",
            "messages": [{"role": "user", "content": "hola"}],
            "max_tokens": 5,
            "stream": True,
        },
        headers={"authorization": f"Bearer {secret}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining-requests"] == "28"
        raw = b"".join(response.iter_raw())
    events = sse.parse_events(raw)
    assert all("usage" not in event for event in events if isinstance(event, dict))
    assert len(sse.chat_stream(events, n=1, include_usage=False).choices[0].text) == 5

    deadline = time.monotonic() + 5
    while counters(pair.url, key["id"])["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    state = counters(pair.url, key["id"])
    # 23 prompt tokens each (one per byte of the chat template); 4 + 5 completion tokens;
    # $10 per million both ways.
    assert state["spend"] == state["ledger"] == (23 + 4 + 23 + 5) * 10 == 550

    own = get(pair.a.url, "/v1/key", secret).json()["data"]
    assert own["label"] == "uso" and own["limit"] == 1.0 and own["limit_reset"] == "daily"
    assert own["usage"] == pytest.approx(550 / 1e6)
    assert own["limit_remaining"] == pytest.approx(1 - 550 / 1e6)
    assert own["is_free_tier"] is False and own["rate_limit"]["requests"] == 30

    usage = get(pair.b.url, "/v1/usage", secret).json()
    assert usage["object"] == "list"
    (row,) = usage["data"]
    assert 0 <= row.pop("cached_tokens") <= 46  # the fake engine's prefix cache may hit
    assert row == {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "model": "fake",
        "requests": 2,
        "prompt_tokens": 46,
        "completion_tokens": 9,
        "cost": pytest.approx(550 / 1e6),
    }
    assert (
        get(pair.a.url, "/v1/usage", secret, start="2000-01-01", end="2000-01-31").json()["data"]
        == []
    )
    bad = get(pair.a.url, "/v1/usage", secret, start="yesterday")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "start"
    assert get(pair.a.url, "/v1/usage", secret, key="key_other").status_code == 403

    _admin, admin_secret = create(pair.url, "--admin")
    everyone = get(pair.a.url, "/v1/usage", admin_secret).json()["data"]
    mine = [r for r in everyone if r["key"] == key["prefix"]]
    assert len(mine) == 1 and mine[0]["requests"] == 2
    only = get(pair.a.url, "/v1/usage", admin_secret, key=key["id"]).json()["data"]
    assert [r["key"] for r in only] == [key["prefix"]]


def test_model_globs_caller_and_priority(pair: Pair) -> None:
    key, secret = create(pair.url, "--models", "slo*", "--priority", "7")
    refused = chat(pair.a.url, secret)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    answer = chat(pair.a.url, secret, model="slow")
    assert answer.status_code == 200, answer.text
    text = answer.json()["choices"][0]["message"]["content"]
    assert f"caller {key['id']}" in text and "priority 7" in text


def test_parallel_and_tpm_limits(pair: Pair) -> None:
    _key, secret = create(pair.url, "--parallel", "1", "--tpm", "300")
    slow: list[httpx.Response] = []
    holder = threading.Thread(
        target=lambda: slow.append(
            chat(pair.a.url, secret, model="slow", metadata={"seconds": "1.5"})
        )
    )
    holder.start()
    time.sleep(0.5)
    refused = chat(pair.b.url, secret)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "in parallel" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-ratelimit-limit-tokens"] == "300"
    holder.join()
    assert slow[0].status_code == 200
    too_big = chat(pair.a.url, secret, max_tokens=400)
    assert too_big.status_code == 429 and "tokens per minute" in too_big.text


def test_no_secret_reaches_a_log_line(pair: Pair) -> None:
    key, secret = create(pair.url)
    for server in pair.servers:
        chat(server.url, secret)
        chat(server.url, secret + "x")
        chat(server.url, "sk-pam-" + "A" * 43)
    keys_cli(pair.url, "revoke", key["id"])
    time.sleep(0.6)
    for server in pair.servers:
        assert chat(server.url, secret).status_code == 401
        log = server.log()
        assert "GET /v1/models" in log or "POST /v1/chat/completions" in log  # it does log
        assert secret not in log and secret[len(key["prefix"]) :] not in log
