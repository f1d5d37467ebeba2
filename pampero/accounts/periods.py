"""Budget periods: when a key's budget starts over (UTC).

No database here: ``pampero keys``' argument parser (``parser.py``) uses these without loading
SQLAlchemy, which a server without accounts never imports.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Literal

Reset = Literal["daily", "weekly", "monthly", "none"]
RESETS: tuple[str, ...] = ("daily", "weekly", "monthly", "none")


def period_bounds(reset: str, now: float) -> tuple[float, float | None]:
    """The start of the budget period holding ``now`` and when the next one starts (UTC)."""
    if reset == "none":
        return 0.0, None
    day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if reset == "daily":
        start, end = day, day + dt.timedelta(days=1)
    elif reset == "weekly":  # weeks start on Monday, as ISO's do
        start = day - dt.timedelta(days=day.weekday())
        end = start + dt.timedelta(days=7)
    else:
        start = day.replace(day=1)
        days = calendar.monthrange(start.year, start.month)[1]
        end = start + dt.timedelta(days=days)
    return start.timestamp(), end.timestamp()
