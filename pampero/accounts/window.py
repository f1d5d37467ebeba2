"""The rpm and tpm window: a sliding minute counted in ten-second buckets, kept in the key's row.

A fixed window that restarts every minute lets a key send its whole rpm at the end of one
window and again at the start of the next: twice its limit within a few seconds. Here a key's
requests and tokens are counted in buckets of ``BUCKET`` seconds (``SLOTS`` of them, a ring of
columns in ``pampero_keys``: ``rate_requests_0..6``, ``rate_tokens_0..6``, and ``rate_epoch``,
the newest bucket written). A request is admitted only if the buckets of the last minute,
counted whole, leave room for it; so over ANY 60 s span a key never gets more than its rpm (or
tpm), and a burst of rpm requests at once is admitted in full. A request's slot comes back
60 to 70 s after it was admitted (when its whole bucket has left the window).

Why that holds: a request admitted at time ``s`` (in bucket ``n = floor(s / BUCKET)``) counted
every bucket from ``n - SLOTS + 1`` on, which begin at or before ``s - 60``; so every request
admitted in ``(s - 60, s]`` was counted when it was.

The state lives in the key's row, so the conditional ``UPDATE`` that takes the other limits
takes these too, atomically (PostgreSQL re-checks its ``WHERE`` against the row it waited for;
a separate table would be read from the statement's older snapshot).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WINDOW = 60.0  # seconds: what rpm and tpm are "per"
BUCKET = 10.0  # seconds counted together
SLOTS = int(WINDOW // BUCKET) + 1  # the buckets a window can touch: 7

REQUESTS = tuple(f"rate_requests_{i}" for i in range(SLOTS))
TOKENS = tuple(f"rate_tokens_{i}" for i in range(SLOTS))
COLUMNS = ("rate_epoch", *REQUESTS, *TOKENS)


def epoch_of(now: float) -> int:
    """The bucket holding ``now``."""
    return math.floor(now / BUCKET)


def slot_of(epoch: int) -> int:
    return epoch % SLOTS


# SQL fragments (SQLite and PostgreSQL alike). ``:epoch`` is the request's bucket; the newest
# bucket is the later of it and the row's, so a process whose clock lags never moves it back.
_NEWEST = "(CASE WHEN :epoch > rate_epoch THEN :epoch ELSE rate_epoch END)"


def _held(i: int) -> str:
    """The bucket slot ``i`` holds (the latest one at or before ``rate_epoch`` with its
    residue). SQL's ``%`` truncates; for the never-written row (``rate_epoch`` 0) that still
    yields a bucket far in the past."""
    return f"(rate_epoch - ((rate_epoch - {i}) % {SLOTS}))"


def _live(i: int) -> str:
    return f"({_held(i)} > {_NEWEST} - {SLOTS})"


def _counted(columns: tuple[str, ...]) -> str:
    return " + ".join(
        f"(CASE WHEN {_live(i)} THEN {column} ELSE 0 END)" for i, column in enumerate(columns)
    )


# What the window holds now: the requests and tokens of its live buckets.
USED_REQUESTS = f"({_counted(REQUESTS)})"
USED_TOKENS = f"({_counted(TOKENS)})"

# The SET clauses that count one request with ``:tokens`` tokens in bucket ``:epoch`` (slot
# ``:slot``), zeroing the buckets that have left the window.
TAKE = ",\n  ".join(
    [
        *(
            f"{column} = (CASE WHEN {_live(i)} THEN {column} ELSE 0 END)"
            f" + (CASE WHEN :slot = {i} THEN 1 ELSE 0 END)"
            for i, column in enumerate(REQUESTS)
        ),
        *(
            f"{column} = (CASE WHEN {_live(i)} THEN {column} ELSE 0 END)"
            f" + (CASE WHEN :slot = {i} THEN CAST(:tokens AS BIGINT) ELSE 0 END)"
            for i, column in enumerate(TOKENS)
        ),
        f"rate_epoch = {_NEWEST}",
    ]
)

# The SET clauses that replace a settled request's token estimate (``:estimate``, counted in
# bucket ``:epoch``, slot ``:slot``) by its real ``:tokens``, if that bucket is still held.
CORRECT = ",\n    ".join(
    f"{column} = CASE WHEN :slot = {i} AND {_held(i)} = :epoch"
    f" THEN {column} - CAST(:estimate AS BIGINT) + CAST(:tokens AS BIGINT) ELSE {column} END"
    for i, column in enumerate(TOKENS)
)


@dataclass(frozen=True)
class Window:
    """A key's window as read from its row."""

    epoch: int = 0
    requests: tuple[int, ...] = (0,) * SLOTS
    tokens: tuple[int, ...] = (0,) * SLOTS

    @classmethod
    def of(cls, row: Any) -> Window:
        """From a row (a mapping) holding ``COLUMNS``."""
        return cls(
            epoch=int(row["rate_epoch"]),
            requests=tuple(int(row[column]) for column in REQUESTS),
            tokens=tuple(int(row[column]) for column in TOKENS),
        )

    def _live(self, now: float) -> list[int | None]:
        """The bucket each slot holds, or None where it has left the window at ``now``."""
        newest = max(self.epoch, epoch_of(now))
        held = [self.epoch - ((self.epoch - i) % SLOTS) for i in range(SLOTS)]
        return [bucket if bucket > newest - SLOTS else None for bucket in held]

    def used(self, now: float) -> tuple[int, int]:
        """Requests and tokens counted in the window at ``now``."""
        live = self._live(now)
        requests = sum(
            n for n, bucket in zip(self.requests, live, strict=True) if bucket is not None
        )
        tokens = sum(n for n, bucket in zip(self.tokens, live, strict=True) if bucket is not None)
        return requests, tokens

    def _ending(self, now: float, tokens: bool) -> list[tuple[float, int]]:
        """(when it leaves the window, its count) of each non-empty live bucket, oldest first."""
        counts = self.tokens if tokens else self.requests
        return sorted(
            ((bucket + SLOTS) * BUCKET, n)
            for n, bucket in zip(counts, self._live(now), strict=True)
            if bucket is not None and n > 0
        )

    def free_at(self, now: float, *, limit: int, need: int = 1, tokens: bool = False) -> float:
        """When ``need`` more requests (or tokens) fit under ``limit``: ``now`` if they fit
        already, else when the bucket whose leaving makes room leaves (70 s away at most)."""
        used = self.used(now)[1 if tokens else 0]
        if used + need <= limit:
            return now
        ending = self._ending(now, tokens)
        for end, n in ending:
            used -= n
            if used + need <= limit:
                return end
        return ending[-1][0] if ending else now

    def clears(self, now: float, *, tokens: bool = False) -> float | None:
        """When the newest counted request (or token) leaves: the window is empty again."""
        ending = self._ending(now, tokens)
        return ending[-1][0] if ending else None
