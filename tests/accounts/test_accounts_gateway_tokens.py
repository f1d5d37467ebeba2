"""``/tokenize`` and ``/detokenize`` through a gateway with accounts: the model comes from an
upstream (a pampero node serving the fake engine), and a key still pays for them in rpm and
model globs as it does for a local model (tests/accounts/test_accounts_models.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.accounts.conftest import LEASE, counters, create
from tests.e2e.harness import Launcher, Server


@pytest.fixture(scope="module")
def gateway(launch: Launcher, database_url: str, fake_config: Path) -> Iterator[Server]:
    with launch("--config", str(fake_config)) as node:
        flags = ("--database-url", database_url, "--accounts-lease", LEASE)
        with launch("--upstream", f"node={node.url}", *flags) as running:
            yield running


def test_routed_tokens_count_against_the_key(gateway: Server, database_url: str) -> None:
    allowed, secret = create(database_url, "--name", "tok", "--models", "fake", "--rpm", "2")
    _, other = create(database_url, "--name", "otro", "--models", "otro-*")
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        deadline = time.monotonic() + 30  # the gateway lists the node's models at start
        while client.get("/v1/models", headers=auth(secret)).json().get("data") == []:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        tokens = client.post(
            "/tokenize", json={"model": "fake", "prompt": "hola"}, headers=auth(secret)
        )
        assert tokens.status_code == 200, tokens.text
        assert tokens.headers["x-pampero-provider"] == "node"
        ids = tokens.json()["tokens"]
        back = client.post(
            "/detokenize", json={"model": "fake", "tokens": ids}, headers=auth(secret)
        )
        assert back.status_code == 200, back.text
        third = client.post(
            "/tokenize", json={"model": "fake", "prompt": "x"}, headers=auth(secret)
        )
        assert third.status_code == 429, third.text  # rpm 2: the two above took it
        refused = client.post(
            "/tokenize", json={"model": "fake", "prompt": "x"}, headers=auth(other)
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "model_not_allowed"
    deadline = time.monotonic() + 10
    while ledger_rows(database_url, allowed["id"]) < 2:  # two free rows, settled after answering
        assert time.monotonic() < deadline, counters(database_url, allowed["id"])
        time.sleep(0.1)
    assert counters(database_url, allowed["id"])["ledger"] == 0  # tokens cost nothing


def ledger_rows(url: str, key_id: str) -> int:
    from sqlalchemy import text

    from pampero.accounts import Database

    async def read() -> int:
        database = Database.connect(url)
        try:
            async with database.read() as conn:
                query = text("SELECT COUNT(*) FROM pampero_usage_ledger WHERE key_id = :id")
                return int((await conn.execute(query, {"id": key_id})).scalar_one())
        finally:
            await database.close()

    return asyncio.run(read())


def auth(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}
