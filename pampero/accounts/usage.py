"""Reading usage: a key's own summary (``GET /v1/key``), usage by day and model
(``GET /v1/usage``, from the daily rollup), and ``reconcile``, which rebuilds every counter
and the rollup from the append-only ledger.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from pampero.accounts.database import Database
from pampero.accounts.keys import Key
from pampero.accounts.limits import WINDOW
from pampero.errors import InvalidRequestError
from pampero.pricing import usd

USAGE_DAYS = 31  # the default range of /v1/usage: the last 31 days, today included


def key_summary(key: Key, now: float | None = None) -> dict[str, Any]:
    """``GET /v1/key`` in OpenRouter's shape, plus pampero's own limits."""
    now = time.time() if now is None else now
    spend = key.spend_now(now)
    remaining = None if key.budget is None else usd(max(0, key.budget - spend - key.reserved))
    return {
        "data": {
            "label": key.name or key.prefix,
            "usage": usd(spend),
            "limit": None if key.budget is None else usd(key.budget),
            "limit_remaining": remaining,
            "limit_reset": None if key.budget_reset == "none" else key.budget_reset,
            "is_free_tier": False,
            "rate_limit": {
                "requests": key.rpm,
                "tokens": key.tpm,
                "parallel": key.parallel,
                "interval": f"{int(WINDOW)}s",
            },
            "reserved": usd(key.reserved),
            "expires_at": key.expires_at,
            "priority": key.priority,
            "models": list(key.models),
        }
    }


def _date(value: str | None, name: str, default: dt.date) -> str:
    if value is None:
        return default.isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidRequestError(f"'{name}' must be a date (YYYY-MM-DD)", param=name) from None


_USAGE = """
SELECT d.day, d.model, k.prefix, d.requests, d.prompt_tokens, d.completion_tokens,
       d.cached_tokens, d.cost
FROM pampero_usage_daily d JOIN pampero_keys k ON k.id = d.key_id
WHERE d.day >= :start AND d.day <= :end {where}
ORDER BY d.day, d.model, k.prefix
"""


async def usage(
    database: Database,
    *,
    start: str | None,
    end: str | None,
    key_id: str | None,
    show_keys: bool,
) -> dict[str, Any]:
    """Usage by day and model (and key, for admins), from the daily rollup."""
    today = dt.datetime.now(dt.UTC).date()
    last = _date(end, "end", today)
    first = _date(start, "start", dt.date.fromisoformat(last) - dt.timedelta(days=USAGE_DAYS - 1))
    if first > last:
        raise InvalidRequestError("'start' is after 'end'", param="start")
    params: dict[str, Any] = {"start": first, "end": last}
    where = ""
    if key_id is not None:
        where = "AND d.key_id = :key_id"
        params["key_id"] = key_id
    async with database.read() as conn:
        rows = (await conn.execute(text(_USAGE.format(where=where)), params)).all()
    data = []
    for row in rows:
        item: dict[str, Any] = {"date": row.day, "model": row.model}
        if show_keys:
            item["key"] = row.prefix
        item.update(
            requests=int(row.requests),
            prompt_tokens=int(row.prompt_tokens),
            completion_tokens=int(row.completion_tokens),
            cached_tokens=int(row.cached_tokens),
            cost=usd(int(row.cost)),
        )
        data.append(item)
    return {"object": "list", "data": data}


@dataclass(frozen=True)
class Correction:
    key_id: str
    prefix: str
    counter: str
    was: int
    now: int


_COUNTERS = """
SELECT k.id, k.prefix, k.spend, k.reserved, k.in_flight,
  (SELECT COALESCE(SUM(l.cost), 0) FROM pampero_usage_ledger l
     WHERE l.key_id = k.id AND l.created_at >= k.period_start) AS ledger_spend,
  (SELECT COALESCE(SUM(r.amount), 0) FROM pampero_reservations r
     WHERE r.key_id = k.id) AS live_reserved,
  (SELECT COUNT(*) FROM pampero_reservations r WHERE r.key_id = k.id) AS live_in_flight
FROM pampero_keys k ORDER BY k.id
"""

_REBUILD_ROLLUP = """
INSERT INTO pampero_usage_daily
  (day, key_id, model, requests, prompt_tokens, completion_tokens, cached_tokens, cost)
SELECT day, key_id, model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens),
       SUM(cached_tokens), SUM(cost)
FROM pampero_usage_ledger WHERE status <> 'expired'
GROUP BY day, key_id, model
"""


async def reconcile(database: Database) -> list[Correction]:
    """Rebuild spend (this period's ledger), reservations and requests in flight (the live
    reservation rows) and the daily rollup from the ledger; returns what changed."""
    corrections: list[Correction] = []
    async with database.write() as conn:
        if not database.sqlite:  # settlements wait until the counters are rebuilt
            await conn.execute(text("SELECT id FROM pampero_keys ORDER BY id FOR UPDATE"))
        rows = (await conn.execute(text(_COUNTERS))).all()
        for row in rows:
            pairs = (
                ("spend", row.spend, row.ledger_spend),
                ("reserved", row.reserved, row.live_reserved),
                ("in_flight", row.in_flight, row.live_in_flight),
            )
            changed = {name: int(right) for name, was, right in pairs if int(was) != int(right)}
            for name, was, right in pairs:
                if int(was) != int(right):
                    corrections.append(Correction(row.id, row.prefix, name, int(was), int(right)))
            if changed:
                sets = ", ".join(f"{name} = :{name}" for name in changed)
                await conn.execute(
                    text(f"UPDATE pampero_keys SET {sets} WHERE id = :id"),
                    {**changed, "id": row.id},
                )
        await conn.execute(text("DELETE FROM pampero_usage_daily"))
        await conn.execute(text(_REBUILD_ROLLUP))
    return corrections
