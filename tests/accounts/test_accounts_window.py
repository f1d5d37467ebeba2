"""The sliding rpm/tpm window, on SQLite and PostgreSQL: admission and settlement run on the
database directly with chosen clocks, so a minute's boundary is crossed without waiting.

A fixed minute let a key send its rpm at 0:59 and again at 1:00; the window here holds over
any 60 s span. A burst of rpm requests is admitted in full; a request's slot comes back 60 to
70 s later; ``Retry-After`` and the ``x-ratelimit-*`` headers say when.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from pampero.accounts import Accounts, Key, KeySpec, Outcome, limits
from pampero.accounts.database import MIGRATIONS
from pampero.accounts.keys import create_key, get_key
from pampero.accounts.window import Window
from pampero.errors import RateLimited

T0 = 1_800_000_050.0  # the start of a ten-second bucket


def run(url: str, body: Callable[[Accounts], Awaitable[None]]) -> None:
    async def main() -> None:
        accounts = Accounts.connect(url, lease=60)
        await accounts.database.migrate()
        try:
            await body(accounts)
        finally:
            await accounts.database.close()

    asyncio.run(main())


async def take(
    accounts: Accounts, key: Key, now: float, *, tokens: int = 1
) -> tuple[limits.Ticket, dict[str, str]]:
    """Admit one request of ``key`` at ``now``: its ticket and its ``x-ratelimit-*`` headers."""
    headers: dict[str, str] = {}
    ticket = await limits.admit(
        accounts.database,
        key,
        model="m",
        provider="p",
        price=None,
        amount=0,
        tokens=tokens,
        lease=60,
        arrival=0.0,
        headers=headers,
        now=now,
    )
    ticket.request_id = f"req-{now}"
    return ticket, headers


async def refused(accounts: Accounts, key: Key, now: float, tokens: int = 1) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        await take(accounts, key, now, tokens=tokens)
    return caught.value


def test_rpm_holds_across_the_boundary_of_a_minute(database_url: str) -> None:
    async def body(accounts: Accounts) -> None:
        key, _ = await create_key(accounts.database, KeySpec(rpm=10), now=T0)
        for i in range(10):  # the whole rpm at once, late in a minute
            _ticket, headers = await take(accounts, key, T0 + 9 + i * 0.01)
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-reset-requests"] == "1m0.91s"  # at T0 + 70
        # A fixed window restarting at T0 + 10 would admit ten more here.
        for moment in (T0 + 10, T0 + 30, T0 + 60, T0 + 69.9):
            error = await refused(accounts, key, moment)
            # The slots come back when their bucket [T0, T0 + 10) leaves: at T0 + 70.
            assert error.retry_after == max(1, int(-(-(T0 + 70 - moment) // 1)))
            assert error.retry_after <= 70
        # At T0 + 70 the ten leave; none had been admitted for 60.9 s.
        for i in range(10):
            await take(accounts, key, T0 + 70 + i * 0.01)
        await refused(accounts, key, T0 + 75)
        state = await get_key(accounts.database, key.id)
        assert state.window.used(T0 + 75) == (10, 10)

    run(database_url, body)


def test_any_sixty_seconds_hold_at_most_the_rpm(database_url: str) -> None:
    """Requests every 1.5 s against rpm 20 for four minutes: count every 60 s span."""

    async def body(accounts: Accounts) -> None:
        key, _ = await create_key(accounts.database, KeySpec(rpm=20), now=T0)
        admitted: list[float] = []
        moment = T0
        while moment < T0 + 240:
            try:
                await take(accounts, key, moment)
                admitted.append(moment)
            except RateLimited:
                pass
            moment += 1.5
        for start in admitted:
            inside = [t for t in admitted if start <= t < start + 60]
            assert len(inside) <= 20, (start, inside)
        # It is no trickle either: about 20 a minute over four minutes.
        assert len(admitted) >= 60, len(admitted)

    run(database_url, body)


def test_tpm_counts_real_tokens_after_settlement(database_url: str) -> None:
    async def body(accounts: Accounts) -> None:
        key, _ = await create_key(accounts.database, KeySpec(tpm=1000), now=T0)
        ticket, headers = await take(accounts, key, T0, tokens=900)
        assert headers["x-ratelimit-remaining-tokens"] == "100"
        error = await refused(accounts, key, T0 + 5, tokens=200)
        assert "1000 tokens per minute" in str(error.message)
        # It used 150 tokens in the end: 850 come back at once.
        await limits.settle(
            accounts.database,
            ticket,
            Outcome("completed", prompt_tokens=100, completion_tokens=50),
            now=T0 + 6,
        )
        state = await get_key(accounts.database, key.id)
        assert state.window.used(T0 + 6) == (1, 150)
        await take(accounts, key, T0 + 7, tokens=800)
        error = await refused(accounts, key, T0 + 8, tokens=100)
        # 950 used, all in the bucket [T0, T0 + 10): 100 more fit when it leaves, at T0 + 70.
        assert error.retry_after == 62

    run(database_url, body)


def test_a_lagging_clock_never_frees_a_slot_early(database_url: str) -> None:
    """Two processes whose clocks differ by a bucket: the later bucket is never forgotten."""

    async def body(accounts: Accounts) -> None:
        key, _ = await create_key(accounts.database, KeySpec(rpm=3), now=T0)
        await take(accounts, key, T0 + 25)  # a clock ahead
        await take(accounts, key, T0 + 12)  # one behind
        await take(accounts, key, T0 + 13)
        await refused(accounts, key, T0 + 14)
        await refused(accounts, key, T0 + 79)  # the T0 + 12 ones leave at T0 + 80
        await take(accounts, key, T0 + 80)
        await take(accounts, key, T0 + 80.5)
        await refused(accounts, key, T0 + 89)  # the T0 + 25 one leaves at T0 + 90

    run(database_url, body)


def test_a_database_of_the_fixed_window_migrates_with_its_keys(tmp_path: Path) -> None:
    """A database made by migration 0001 (the fixed window) keeps its keys, each with an
    empty sliding window, once ``migrate`` brings it to the head."""
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "0001_accounts")
        conn.execute(
            text(
                "INSERT INTO pampero_keys (id, name, prefix, secret_hash, models, rpm,"
                " budget_reset, period_start, disabled, admin, metadata, created_at, spend,"
                " reserved, in_flight, window_start, window_requests, window_tokens) VALUES"
                " ('key_old', 'vieja', 'sk-pam-old', 'h', '[]', 5, 'none', 0, false, false,"
                " '{}', 0, 0, 0, 0, :start, 5, 70)"
            ),
            {"start": T0},
        )
    engine.dispose()

    async def body(accounts: Accounts) -> None:
        key = await get_key(accounts.database, "key_old")
        assert key.rpm == 5 and key.name == "vieja" and key.window == Window()
        for i in range(5):
            await take(accounts, key, T0 + i)
        await refused(accounts, key, T0 + 5)

    run(url, body)
