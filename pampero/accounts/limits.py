"""Admission and settlement: every limit of a key checked and taken in one atomic statement.

At admission one conditional ``UPDATE ... WHERE <every limit holds> RETURNING`` on the key's
row counts the request in its sliding one-minute window (rpm, and tpm with the tokens known so
far: ``window.py``), in flight (parallel) and reserves its worst-case cost against the budget;
the same transaction records the reservation with a lease. No row back means a limit refused
it: the key is read once more to say which. Row locks (PostgreSQL) or ``BEGIN IMMEDIATE``
(SQLite) make this exact however many processes share the database.

When the request ends (completed, failed, disconnected) its settlement deletes the reservation,
gives back what was reserved, adds the real cost, corrects the window's tokens, appends a
ledger row and adds it to the day's rollup, in one transaction. A reservation whose process
died is not renewed; once its lease has passed, any process releases it (``sweep``), and the
ledger records it as ``expired`` at no cost.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from pampero.accounts import window as rate
from pampero.accounts.database import Database, HotConnection, Statement
from pampero.accounts.keys import Key, key_now
from pampero.accounts.outcome import Outcome, Ticket
from pampero.accounts.periods import period_bounds
from pampero.accounts.window import Window
from pampero.errors import AuthenticationError, QuotaExceeded, RateLimited
from pampero.pricing import Price, micro_usd, usd

WINDOW = rate.WINDOW

_WINDOW_COLUMNS = ", ".join(rate.COLUMNS)

_ADMIT = f"""
UPDATE pampero_keys SET
  {rate.TAKE},
  in_flight = in_flight + 1,
  reserved = reserved + :amount,
  spend = CASE WHEN period_end <= :now THEN 0 ELSE spend END,
  period_start = CASE WHEN period_end <= :now THEN :new_start ELSE period_start END,
  period_end = CASE WHEN period_end <= :now THEN :new_end ELSE period_end END
WHERE id = :id AND revoked_at IS NULL AND NOT disabled
  AND (expires_at IS NULL OR expires_at > :now)
  AND (rpm IS NULL OR {rate.USED_REQUESTS} < rpm)
  AND (tpm IS NULL OR {rate.USED_TOKENS} + CAST(:tokens AS BIGINT) <= tpm)
  AND (parallel IS NULL OR in_flight < parallel)
  AND (budget IS NULL OR
       (CASE WHEN period_end <= :now THEN 0 ELSE spend END) + reserved + :amount <= budget)
RETURNING {_WINDOW_COLUMNS}
"""

_RESERVE = """
INSERT INTO pampero_reservations
  (id, key_id, model, amount, tokens, window_start, created_at, expires_at)
VALUES (:rid, :id, :model, :amount, :tokens, :bucket, :now, :expires_at)
"""

# SQLite: admission's UPDATE, then (if it admitted) the reservation, in one transaction.
_ADMIT_LITE = text(_ADMIT)
_RESERVE_LITE = text(_RESERVE)

_RELEASE = text("DELETE FROM pampero_reservations WHERE id = :id RETURNING amount")

_SETTLE_SET = f"""
  spend = CASE WHEN period_end <= :now THEN :cost ELSE spend + :cost END,
  period_start = CASE WHEN period_end <= :now THEN :new_start ELSE period_start END,
  period_end = CASE WHEN period_end <= :now THEN :new_end ELSE period_end END,
  {rate.CORRECT}
"""

_SETTLE = text(
    f"""
UPDATE pampero_keys SET
  reserved = reserved - :amount,
  in_flight = in_flight - :held,{_SETTLE_SET}
WHERE id = :key_id
"""
)

_LEDGER_SQL = """
INSERT INTO pampero_usage_ledger
  (request_id, key_id, model, provider, prompt_tokens, completion_tokens, cached_tokens,
   reasoning_tokens, images, latency_ms, cost, status, created_at, day)
VALUES (:request_id, :key_id, :model, :provider, :prompt_tokens, :completion_tokens,
   :cached_tokens, :reasoning_tokens, :images, :latency_ms, :cost, :status, :now, :day)
"""
_LEDGER = text(_LEDGER_SQL)

_ROLLUP_SQL = """
INSERT INTO pampero_usage_daily
  (day, key_id, model, requests, prompt_tokens, completion_tokens, cached_tokens, cost)
VALUES (:day, :key_id, :model, 1, :prompt_tokens, :completion_tokens, :cached_tokens, :cost)
ON CONFLICT (day, key_id, model) DO UPDATE SET
  requests = pampero_usage_daily.requests + 1,
  prompt_tokens = pampero_usage_daily.prompt_tokens + excluded.prompt_tokens,
  completion_tokens = pampero_usage_daily.completion_tokens + excluded.completion_tokens,
  cached_tokens = pampero_usage_daily.cached_tokens + excluded.cached_tokens,
  cost = pampero_usage_daily.cost + excluded.cost
"""
_ROLLUP = text(_ROLLUP_SQL)

# PostgreSQL: admission and settlement as one statement each (data-modifying CTEs), run in
# autocommit through asyncpg (``Database.one``), so each costs one round trip instead of BEGIN,
# two or four statements, COMMIT.
_ADMIT_PG = Statement(
    "WITH admitted AS ("
    + _ADMIT.replace("RETURNING rate_epoch", "RETURNING id, rate_epoch")
    + "), reserved AS ("
    + _RESERVE.replace("VALUES (:rid, :id,", "SELECT :rid, id,").replace(
        ":expires_at)", ":expires_at FROM admitted"
    )
    + f")\nSELECT {_WINDOW_COLUMNS} FROM admitted\n"
)

_SETTLE_PG = Statement(
    f"""
WITH released AS (
  DELETE FROM pampero_reservations WHERE id = :rid RETURNING amount
), settled AS (
  UPDATE pampero_keys SET
    reserved = reserved - COALESCE((SELECT amount FROM released), 0),
    in_flight = in_flight - (SELECT COUNT(*) FROM released),{_SETTLE_SET}
  WHERE id = :key_id
), logged AS ({_LEDGER_SQL})
{_ROLLUP_SQL}"""
)


_EXPIRED = text(
    """
DELETE FROM pampero_reservations WHERE expires_at < :now
RETURNING id, key_id, model, amount, created_at
"""
)

_UNRESERVE = text(
    """
UPDATE pampero_keys SET reserved = reserved - :amount, in_flight = in_flight - 1
WHERE id = :key_id
"""
)


def day_of(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def rate_headers(key: Key, window: Window, now: float) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for the key's window as it stands: the reset is
    when the window is empty again (its newest counted request leaves it)."""
    headers: dict[str, str] = {}
    requests, tokens = window.used(now)
    if key.rpm is not None:
        headers["x-ratelimit-limit-requests"] = str(key.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(0, key.rpm - requests))
        headers["x-ratelimit-reset-requests"] = _duration((window.clears(now) or now) - now)
    if key.tpm is not None:
        headers["x-ratelimit-limit-tokens"] = str(key.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, key.tpm - tokens))
        headers["x-ratelimit-reset-tokens"] = _duration(
            (window.clears(now, tokens=True) or now) - now
        )
    return headers


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``6m0s``, ``1.5s``, ``20ms``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text_seconds = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text_seconds}" if minutes else text_seconds


@dataclass(frozen=True)
class Closed:
    """A key whose rpm is used up until ``until``, and its window when that was seen: until
    then every request of the key is refused, whichever process asks (a window's count only
    grows until its oldest bucket leaves)."""

    until: float
    window: Window


async def admit(
    database: Database,
    key: Key,
    *,
    model: str,
    provider: str,
    price: Price | None,
    amount: int,
    tokens: int,
    lease: float,
    arrival: float,
    headers: dict[str, str],
    closed: dict[str, Closed] | None = None,
    now: float | None = None,
) -> Ticket:
    """Take every limit of ``key`` for one request, or raise the error naming the first that
    refuses it; ``headers`` receives the key's ``x-ratelimit-*`` headers either way. When the
    key's requests-per-minute window is full, ``closed[key.id]`` receives until when."""
    now = time.time() if now is None else now
    start, end = period_bounds(key.budget_reset, now)
    epoch = rate.epoch_of(now)
    ticket_id = "res_" + secrets.token_hex(12)
    params: dict[str, Any] = {
        "now": now,
        "epoch": epoch,
        "slot": rate.slot_of(epoch),
        "bucket": epoch * rate.BUCKET,
        "tokens": tokens,
        "amount": amount,
        "new_start": start,
        "new_end": end,
        "id": key.id,
        "rid": ticket_id,
        "model": model,
        "expires_at": now + lease,
    }
    for _attempt in range(3):
        row = await _take(database, params)
        if row is not None:
            break
        # No row: a limit refused it; raise its error, unless what refused it has been freed
        # since (a request ended in between), and then try again.
        await _refusal(
            database, key, amount=amount, tokens=tokens, headers=headers, now=now, closed=closed
        )
    else:
        raise RateLimited(f"the limits of key {key.prefix} are contended; retry", retry_after=1)
    headers.update(rate_headers(key, Window.of(row), now))
    return Ticket(
        id=ticket_id,
        key=key,
        model=model,
        provider=provider,
        price=price,
        amount=amount,
        tokens=tokens,
        epoch=epoch,
        arrival=arrival,
    )


async def _take(database: Database, params: dict[str, Any]) -> Mapping[str, Any] | None:
    """The admission statement and, if it admitted, the reservation, in one transaction."""
    if not database.sqlite:
        return await database.one(_ADMIT_PG, params)
    async with database.hot() as conn:
        row: Mapping[str, Any] | None = (await conn.execute(_ADMIT_LITE, params)).first()
        if row is not None:
            await conn.execute(_RESERVE_LITE, params)
        return row


def _retry_after(at: float, now: float) -> int:
    return max(1, math.ceil(at - now))


async def _refusal(
    database: Database,
    key: Key,
    *,
    amount: int,
    tokens: int,
    headers: dict[str, str],
    now: float,
    closed: dict[str, Closed] | None = None,
) -> None:
    """Raise the error for the limit that refused a request (read after the fact); return if
    none refuses it any more."""
    current = await key_now(database, key.id)
    window = current.window
    headers.update(rate_headers(current, window, now))
    why = current.usable(now)
    if why is not None:
        raise AuthenticationError(why)
    # Another process may have counted requests in a bucket after this request's clock read:
    # judge at the later of the two.
    at = max(now, window.epoch * rate.BUCKET)
    requests, used = window.used(at)
    if current.rpm is not None and requests >= current.rpm:
        until = window.free_at(at, limit=current.rpm)
        if closed is not None:
            closed[key.id] = Closed(until, window)
        raise RateLimited(
            f"rate limit reached: {current.rpm} requests per minute for key {current.prefix}",
            retry_after=_retry_after(until, now),
        )
    if current.tpm is not None and used + tokens > current.tpm:
        until = window.free_at(at, limit=current.tpm, need=tokens, tokens=True)
        raise RateLimited(
            f"rate limit reached: {current.tpm} tokens per minute for key {current.prefix} "
            f"({used} used in the last minute, this request counts {tokens})",
            retry_after=_retry_after(until, now),
        )
    if current.parallel is not None and current.in_flight >= current.parallel:
        raise RateLimited(
            f"rate limit reached: {current.parallel} requests in parallel for key {current.prefix}",
            retry_after=1,
        )
    if current.budget is not None:
        spend = current.spend_now(now)
        if spend + current.reserved + amount > current.budget:
            reset = (
                "never (budget_reset none)"
                if current.period_end is None
                else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(current.period_end))
            )
            raise QuotaExceeded(
                f"budget exceeded for key {current.prefix}: limit ${usd(current.budget):.6f}, "
                f"spend ${usd(spend):.6f}, reserved ${usd(current.reserved):.6f} by requests "
                f"in flight, this request needs up to ${usd(amount):.6f}; resets {reset}"
            )


def cost_of(ticket: Ticket, outcome: Outcome) -> int:
    if outcome.cost is not None:
        return outcome.cost
    if ticket.price is None:
        return 0
    return micro_usd(
        ticket.price,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        images=outcome.images,
    )


async def settle(
    database: Database, ticket: Ticket, outcome: Outcome, *, now: float | None = None
) -> int:
    """Settle ``ticket`` with ``outcome``; returns the cost in micro-USD."""
    now = time.time() if now is None else now
    cost = cost_of(ticket, outcome)
    start, end = period_bounds(ticket.key.budget_reset, now)
    latency_ms = (time.perf_counter() - ticket.arrival) * 1000
    counters = {
        "cost": cost,
        "now": now,
        "new_start": start,
        "new_end": end,
        "epoch": ticket.epoch,
        "slot": rate.slot_of(ticket.epoch),
        "estimate": ticket.tokens,
        "tokens": outcome.prompt_tokens + outcome.completion_tokens,
        "key_id": ticket.key.id,
    }
    row = {
        "request_id": ticket.request_id,
        "key_id": ticket.key.id,
        "model": ticket.model,
        "provider": outcome.provider or ticket.provider,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "cached_tokens": outcome.cached_tokens,
        "reasoning_tokens": outcome.reasoning_tokens,
        "images": outcome.images,
        "latency_ms": latency_ms,
        "cost": cost,
        "status": outcome.status,
        "now": now,
        "day": day_of(now),
    }
    if not database.sqlite:
        await database.one(_SETTLE_PG, {**counters, **row, "rid": ticket.id})
        ticket.settled = True
        return cost
    async with database.hot() as conn:
        released = (await conn.execute(_RELEASE, {"id": ticket.id})).first()
        # A reservation already swept (its lease passed) gave back its share then.
        held = {
            "amount": released.amount if released is not None else 0,
            "held": 1 if released is not None else 0,
        }
        await conn.execute(_SETTLE, {**counters, **held})
        await _record(conn, row)
    ticket.settled = True
    return cost


async def _record(conn: HotConnection, row: dict[str, object]) -> None:
    await conn.execute(_LEDGER, row)
    if row["status"] != "expired":
        await conn.execute(_ROLLUP, row)


async def renew(database: Database, ids: list[str], *, lease: float) -> None:
    """Push the leases of this process's live reservations forward."""
    if ids:
        names = [f"id{i}" for i in range(len(ids))]
        renewal = text(
            "UPDATE pampero_reservations SET expires_at = :expires_at WHERE id IN "
            f"({', '.join(':' + name for name in names)})"
        )
        async with database.hot() as conn:
            await conn.execute(
                renewal, {"expires_at": time.time() + lease, **dict(zip(names, ids, strict=True))}
            )


async def sweep(database: Database, *, now: float | None = None) -> int:
    """Release every reservation whose lease has passed; returns how many."""
    now = time.time() if now is None else now
    async with database.hot() as conn:
        rows = (await conn.execute(_EXPIRED, {"now": now})).all()
        for row in rows:
            await conn.execute(_UNRESERVE, {"amount": row.amount, "key_id": row.key_id})
            await _record(
                conn,
                {
                    "request_id": row.id,
                    "key_id": row.key_id,
                    "model": row.model,
                    "provider": "",
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "cached_tokens": 0,
                    "reasoning_tokens": 0,
                    "images": 0,
                    "latency_ms": (now - row.created_at) * 1000,
                    "cost": 0,
                    "status": "expired",
                    "now": now,
                    "day": day_of(now),
                },
            )
    return len(rows)
