"""Fixtures of the accounts suite: each test module runs once on SQLite and once on a real
PostgreSQL cluster that the session starts from the machine's binaries; two ``pampero serve``
processes share each database.

The servers serve the fake engine (``tests.fake_engine``, a real scheduler over a fake model,
priced) and the ``slow`` backend (``tests.slow_backend``), so a thousand requests cost no real
decoding. Reservations lease for two seconds, so a killed process's expire quickly.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import REPO, Launcher, Server
from tests.postgres_cluster import Cluster, create_cluster, remove_cluster, why_unavailable

pytest.importorskip("sqlalchemy", reason="the accounts extra is not installed")

LEASE = "2"
FAKE_CONFIG = """\
models:
  - id: fake
    engine: tests.fake_engine:create
    price: {prompt: 10.0, completion: 10.0}
n_ctx: 256
max_seqs: 4
n_batch: 64
max_queue: 2000
"""


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    cluster = create_cluster()
    yield cluster
    remove_cluster(cluster)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        with tempfile.TemporaryDirectory(prefix="pampero-accounts-") as directory:
            yield f"sqlite:///{directory}/accounts.db"
        return
    cluster: Cluster = request.getfixturevalue("postgres")
    name = f"db_{request.module.__name__.rsplit('.', 1)[-1]}"
    done = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(cluster.port),
            "-U",
            "pampero",
            "-d",
            "postgres",
            "-c",
            f"CREATE DATABASE {name}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    yield f"postgresql://pampero@127.0.0.1:{cluster.port}/{name}"


@pytest.fixture(scope="module")
def fake_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("accounts") / "fake.yaml"
    path.write_text(FAKE_CONFIG)
    return path


def server_flags(database_url: str, config: Path) -> tuple[str, ...]:
    return (
        "--config",
        str(config),
        "--database-url",
        database_url,
        "--accounts-lease",
        LEASE,
        "--backend",
        "tests.slow_backend:slow_backends",
        "--log-level",
        "debug",
    )


@dataclass
class Pair:
    """Two servers on one accounts database."""

    a: Server
    b: Server
    url: str
    config: Path

    @property
    def servers(self) -> tuple[Server, Server]:
        return (self.a, self.b)


@pytest.fixture(scope="module")
def pair(launch: Launcher, database_url: str, fake_config: Path) -> Iterator[Pair]:
    flags = server_flags(database_url, fake_config)
    with launch(*flags) as a, launch(*flags) as b:
        yield Pair(a, b, database_url, fake_config)


def keys_cli(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pampero", "keys", "--database-url", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def create(url: str, *flags: str) -> tuple[dict[str, Any], str]:
    """A new key made with ``pampero keys create``: its public record and its secret."""
    out = json.loads(keys_cli(url, "create", "--json", *flags).stdout)
    return out["data"], out["key"]


def counters(url: str, key_id: str) -> dict[str, int]:
    """The key's live counters and the sum of its ledger, read from the database."""
    from sqlalchemy import text

    from pampero.accounts import Database

    async def read() -> dict[str, int]:
        database = Database.connect(url)
        try:
            async with database.read() as conn:
                row = (
                    await conn.execute(
                        text(
                            "SELECT spend, reserved, in_flight, (SELECT COALESCE(SUM(cost), 0) "
                            "FROM pampero_usage_ledger WHERE key_id = :id) AS ledger, "
                            "(SELECT COUNT(*) FROM pampero_usage_ledger WHERE key_id = :id "
                            "AND status = 'expired') AS expired "
                            "FROM pampero_keys WHERE id = :id"
                        ),
                        {"id": key_id},
                    )
                ).one()
                return {name: int(value) for name, value in row._mapping.items()}
        finally:
            await database.close()

    return asyncio.run(read())
