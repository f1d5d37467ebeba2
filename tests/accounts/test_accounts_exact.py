"""Limits exact across processes, on SQLite and PostgreSQL: two servers share the database.

A thousand concurrent requests against rpm 100: exactly 100 succeed. A $0.01 budget under
concurrent load never commits more than $0.01. A server killed with SIGKILL mid-request leaves
the counters equal to the ledger once its reservation's lease has passed. (PostgreSQL) the
database going away fails requests closed with 503, and they succeed again once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.accounts.conftest import Pair, counters, create, keys_cli, server_flags
from tests.e2e.harness import Launcher

CHEAP = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


async def burst(
    urls: list[str], secret: str, count: int, body: dict[str, Any]
) -> list[httpx.Response]:
    """``count`` requests at once, spread over ``urls``."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    headers = {"authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(timeout=120, limits=limits, headers=headers) as client:
        return await asyncio.gather(
            *(
                client.post(f"{urls[i % len(urls)]}/v1/chat/completions", json=body)
                for i in range(count)
            )
        )


def settled(url: str, key_id: str, timeout: float = 10) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    state = counters(url, key_id)
    while state["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)
        state = counters(url, key_id)
    return state


def test_a_thousand_concurrent_requests_against_rpm_100_exactly_100_succeed(pair: Pair) -> None:
    key, secret = create(pair.url, "--rpm", "100")
    responses = asyncio.run(burst([pair.a.url, pair.b.url], secret, 1000, CHEAP))
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 100, 429: 900}, statuses
    for response in responses:
        assert response.headers["x-ratelimit-limit-requests"] == "100"
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "rate_limit_exceeded"
            # A slot comes back when its ten-second bucket leaves the minute: 60 to 70 s.
            assert 1 <= int(response.headers["retry-after"]) <= 70
            assert response.headers["x-ratelimit-remaining-requests"] == "0"
    remaining = sorted(
        int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(100))  # each admitted request saw its own count
    state = settled(pair.url, key["id"])
    assert state["spend"] == state["ledger"] > 0 and state["reserved"] == 0


def test_a_budget_of_one_cent_never_commits_more_than_one_cent(pair: Pair) -> None:
    key, secret = create(pair.url, "--budget", "0.01")
    body = {**CHEAP, "max_tokens": 4}
    statuses: Counter[int] = Counter()
    for _round in range(3):
        responses = asyncio.run(burst([pair.a.url, pair.b.url], secret, 40, body))
        statuses.update(response.status_code for response in responses)
        refused = [r for r in responses if r.status_code == 402]
        for response in refused:
            error = response.json()["error"]
            assert error["code"] == "insufficient_quota"
            for word in ("limit $0.010000", "spend $", "reserved $", "resets never"):
                assert word in error["message"], error["message"]
    state = settled(pair.url, key["id"])
    assert statuses[200] > 0 and statuses[402] > 0, statuses
    assert set(statuses) <= {200, 402}, statuses
    assert state["spend"] == state["ledger"] <= 10_000
    assert state["reserved"] == 0
    # Each answer costs (21 + 4) tokens x $10 per million; the ledger holds each one.
    assert state["ledger"] == statuses[200] * 250


def test_a_killed_process_leaves_counters_equal_to_the_ledger(pair: Pair, launch: Launcher) -> None:
    key, secret = create(pair.url, "--budget", "1")
    headers = {"authorization": f"Bearer {secret}"}
    slow = {"model": "slow", "messages": [{"role": "user", "content": "hola"}], "max_tokens": 5}
    done = httpx.post(f"{pair.a.url}/v1/chat/completions", json=slow, headers=headers)
    assert done.status_code == 200
    with launch(*server_flags(pair.url, pair.config)) as doomed:
        waiting = threading.Thread(
            target=lambda: _swallow(
                lambda: httpx.post(
                    f"{doomed.url}/v1/chat/completions",
                    json={**slow, "metadata": {"seconds": "60"}},
                    headers=headers,
                    timeout=90,
                )
            )
        )
        waiting.start()
        deadline = time.monotonic() + 20
        while counters(pair.url, key["id"])["in_flight"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        held = counters(pair.url, key["id"])
        assert held["in_flight"] == 1 and held["reserved"] > 0
        doomed.process.kill()  # SIGKILL: no settlement, no clean shutdown
        doomed.process.wait()
        waiting.join()
    state = settled(pair.url, key["id"], timeout=15)  # the other servers sweep it
    assert state["in_flight"] == 0 and state["reserved"] == 0
    assert state["spend"] == state["ledger"] == 20  # the completed request only
    assert state["expired"] == 1
    assert "0 counter(s) corrected" in keys_cli(pair.url, "reconcile").stdout


def test_a_request_longer_than_its_lease_keeps_its_reservation(pair: Pair) -> None:
    """Leases last 2 s here; a live request's are renewed, so no process sweeps it."""
    key, secret = create(pair.url, "--budget", "1")
    answers: list[httpx.Response] = []
    body = {
        "model": "slow",
        "messages": [{"role": "user", "content": "hola"}],
        "max_tokens": 5,
        "metadata": {"seconds": "5"},
    }
    holder = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                f"{pair.a.url}/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {secret}"},
                timeout=60,
            )
        )
    )
    holder.start()
    time.sleep(4)  # two leases later
    during = counters(pair.url, key["id"])
    holder.join()
    assert answers[0].status_code == 200
    assert during["in_flight"] == 1 and during["reserved"] > 0 and during["expired"] == 0
    after = settled(pair.url, key["id"])
    assert after["expired"] == 0 and after["spend"] == after["ledger"] == 20


def _swallow(call: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call()


def test_the_database_going_away_fails_closed_and_recovers(
    pair: Pair, request: pytest.FixtureRequest
) -> None:
    if not pair.url.startswith("postgresql"):
        pytest.skip("stopping the database is done on PostgreSQL")
    cluster = request.getfixturevalue("postgres")
    _key, secret = create(pair.url)
    assert (
        httpx.post(
            f"{pair.a.url}/v1/chat/completions",
            json=CHEAP,
            headers={"authorization": f"Bearer {secret}"},
        ).status_code
        == 200
    )
    cluster.stop()
    try:
        time.sleep(0.6)  # past the auth cache
        for server in pair.servers:
            down = httpx.post(
                f"{server.url}/v1/chat/completions",
                json=CHEAP,
                headers={"authorization": f"Bearer {secret}"},
                timeout=30,
            )
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "accounts_unavailable"
            assert int(down.headers["retry-after"]) >= 1
            assert httpx.get(f"{server.url}/health").status_code == 200
    finally:
        cluster.start()
    for server in pair.servers:
        deadline = time.monotonic() + 20
        status = 0
        while status != 200 and time.monotonic() < deadline:
            status = httpx.post(
                f"{server.url}/v1/chat/completions",
                json=CHEAP,
                headers={"authorization": f"Bearer {secret}"},
                timeout=30,
            ).status_code
            time.sleep(0.2)
        assert status == 200
