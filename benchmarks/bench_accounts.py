"""The latency the accounts path adds to a request, on SQLite and PostgreSQL.

What a request with an account key pays before the backend is called: authenticating its
secret (``Accounts.authenticate``, cached for half a second) and admission (``Accounts.admit``:
one conditional UPDATE taking every limit, the sliding rpm/tpm window included, and the
reservation's INSERT: one statement on PostgreSQL, one transaction on SQLite). Requests arrive
at a fixed rate (default 100/s) against one key with an rpm, a tpm and a budget, each settled in
the background 5 ms after admission (ledger row, daily rollup, counters), as a real request's
is, so settlements compete with admissions for the database. Reported: p50, p90, p99 of
authenticate + admit, and of each settlement (off the request's path), in milliseconds.

Also ``--usage-rows N``: fill the ledger with N rows over 60 days, 20 keys and 5 models
(and the daily rollup, as settlement maintains it), then time ``GET /v1/usage``'s query.

    .venv/bin/python benchmarks/bench_accounts.py --rate 100 --seconds 10
    .venv/bin/python benchmarks/bench_accounts.py --usage-rows 1000000

PostgreSQL comes from a throwaway cluster (``tests/postgres_cluster.py``) unless ``--postgres
URL`` names one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pampero.accounts import Accounts, KeySpec, Outcome, limits
from pampero.accounts.keys import create_key
from pampero.accounts.usage import usage
from pampero.pricing import Price

PRICE = Price(prompt=0.15, completion=0.6)


async def added_latency(url: str, rate: float, seconds: float) -> tuple[list[float], list[float]]:
    """Authenticate + admit, and settlement, timings in milliseconds."""
    settlements: list[float] = []
    settle = limits.settle

    async def timed_settle(*args: Any, **kwargs: Any) -> int:
        started = time.perf_counter()
        try:
            return await settle(*args, **kwargs)
        finally:
            settlements.append((time.perf_counter() - started) * 1000)

    limits.settle = timed_settle  # type: ignore[assignment]
    accounts = Accounts.connect(url, lease=60)
    await accounts.start()
    spec = KeySpec(rpm=1_000_000, tpm=10**12, budget=10**12, budget_reset="monthly")
    _key, secret = await create_key(accounts.database, spec)
    timings: list[float] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one() -> None:
        started = time.perf_counter()
        key = await accounts.authenticate(secret)
        assert key is not None
        ticket = await accounts.admit(
            key,
            model="bench",
            provider="local",
            price=PRICE,
            amount=5000,
            tokens=300,
            arrival=started,
            request_id="bench",
            headers={},
        )
        timings.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.005)
        accounts.settle(ticket, Outcome("completed", prompt_tokens=200, completion_tokens=50))

    total = int(rate * seconds)
    begin = time.perf_counter()
    for i in range(total):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    await accounts.idle()
    await accounts.stop()
    limits.settle = settle  # type: ignore[assignment]
    return timings, settlements


async def usage_query(url: str, rows: int) -> tuple[float, int]:
    """Fill ledger + rollup with ``rows`` requests, then time the /v1/usage query (p50 of 20)."""
    from sqlalchemy import text

    accounts = Accounts.connect(url, lease=60)
    await accounts.start()
    keys = [(await create_key(accounts.database, KeySpec()))[0] for _ in range(20)]
    models = [f"model-{m}" for m in range(5)]
    now = time.time()
    batch = 5_000
    rollup: dict[tuple[str, str, str], list[int]] = {}
    for offset in range(0, rows, batch):
        values = []
        for i in range(offset, min(rows, offset + batch)):
            created = now - ((i // 100) % 60) * 86400 - (i % 997)
            day = time.strftime("%Y-%m-%d", time.gmtime(created))
            key, model = keys[i % 20].id, models[i % 5]
            values.append(
                {"r": f"req-{i}", "k": key, "m": model, "c": created, "d": day, "cost": 30}
            )
            totals = rollup.setdefault((day, key, model), [0, 0, 0, 0])
            totals[0] += 1
            totals[1] += 100
            totals[2] += 20
            totals[3] += 30
        # Straight on the engine: the filling is not held to a request's statement timeout.
        async with accounts.database.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO pampero_usage_ledger (request_id, key_id, model, provider, "
                    "prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, images, "
                    "latency_ms, cost, status, created_at, day) VALUES (:r, :k, :m, 'local', "
                    "100, 20, 0, 0, 0, 10, :cost, 'completed', :c, :d)"
                ),
                values,
            )
    async with accounts.database.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO pampero_usage_daily (day, key_id, model, requests, prompt_tokens, "
                "completion_tokens, cached_tokens, cost) VALUES (:d, :k, :m, :n, :p, :c, 0, :x)"
            ),
            [
                {"d": d, "k": k, "m": m, "n": t[0], "p": t[1], "c": t[2], "x": t[3]}
                for (d, k, m), t in rollup.items()
            ],
        )
    timings = []
    for i in range(20):
        started = time.perf_counter()
        body = await usage(
            accounts.database,
            start=None,
            end=None,
            key_id=None if i % 2 else keys[0].id,
            show_keys=True,
        )
        timings.append((time.perf_counter() - started) * 1000)
    await accounts.stop()
    return statistics.median(timings), len(body["data"])


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    pick = [ordered[int(len(ordered) * q)] for q in (0.5, 0.9, 0.99)]
    return f"p50 {pick[0]:.3f} ms, p90 {pick[1]:.3f} ms, p99 {pick[2]:.3f} ms (n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--usage-rows", type=int, default=0)
    parser.add_argument("--postgres", help="a PostgreSQL URL (default: a throwaway cluster)")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    cluster = None
    urls: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as directory:
        if args.only != "postgresql":
            urls["sqlite"] = f"sqlite:///{directory}/bench.db"
        if args.only != "sqlite":
            if args.postgres:
                urls["postgresql"] = args.postgres
            else:
                from tests.postgres_cluster import create_cluster

                cluster = create_cluster()
                urls["postgresql"] = cluster.url
        try:
            for name, url in urls.items():
                if args.usage_rows:
                    took, rows = asyncio.run(usage_query(url, args.usage_rows))
                    print(
                        f"{name}: /v1/usage over {args.usage_rows} ledger rows: "
                        f"p50 {took:.2f} ms ({rows} rows answered)"
                    )
                else:
                    timings, settlements = asyncio.run(added_latency(url, args.rate, args.seconds))
                    print(
                        f"{name}: authenticate + admit at {args.rate:g} req/s: "
                        f"{percentiles(timings)}"
                    )
                    print(f"{name}: settlement (in the background): {percentiles(settlements)}")
        finally:
            if cluster is not None:
                from tests.postgres_cluster import remove_cluster

                remove_cluster(cluster)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
