"""What the gateway knows about each provider: its circuit breaker, load and observed speed.

A provider's breaker is *closed* (requests go through), *open* (cooling down until a time:
skipped) or *half-open* (the cooldown is over; one probe request goes through, and its outcome
closes or reopens the breaker). It opens on

- a ``Retry-After`` from the provider (for exactly that long),
- an authentication failure (401/403: for ``auth_cooldown``, minutes: a bad key stays bad),
- ``threshold`` consecutive failures, or a failure rate over ``rate`` among at least
  ``min_samples`` outcomes of the last ``window`` seconds;

and each time it reopens without a success in between, the cooldown doubles, up to ``ceiling``.

Latency (time to first token) and throughput (completion tokens per second after it) are kept
as exponentially weighted moving averages; ``outstanding`` counts requests in flight.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
_ALPHA = 0.2  # weight of the newest sample in the moving averages


@dataclass
class BreakerPolicy:
    cooldown: float = 10.0
    ceiling: float = 300.0
    auth_cooldown: float = 300.0
    threshold: int = 3
    rate: float = 0.5
    min_samples: int = 10
    window: float = 60.0


@dataclass
class ProviderHealth:
    """One provider's breaker and statistics (one event loop: no locks)."""

    name: str
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    opened_until: float = 0.0  # time.monotonic(); 0: never opened
    last_cooldown: float = 0.0
    consecutive: int = 0
    probing: bool = False
    reason: str = ""
    outstanding: int = 0
    latency: float | None = None  # seconds to first token, moving average
    throughput: float | None = None  # tokens per second, moving average
    successes: int = 0
    failures: int = 0
    opens: int = 0
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)

    def state(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if self.opened_until == 0.0:
            return CLOSED
        return OPEN if now < self.opened_until or self.probing else HALF_OPEN

    def available(self, now: float | None = None) -> bool:
        """Whether a request may go to this provider now (never while it cools down)."""
        return self.state(now) != OPEN

    def admit(self) -> None:
        """A request is sent; in half-open state it is the one probe."""
        if self.state() == HALF_OPEN:
            self.probing = True
        self.outstanding += 1

    def release(self) -> None:
        self.outstanding -= 1

    def retry_in(self, now: float | None = None) -> float:
        """Seconds until this provider may be tried again (0: now)."""
        now = time.monotonic() if now is None else now
        return max(0.0, self.opened_until - now) if self.state(now) == OPEN else 0.0

    def success(self, latency: float | None = None, tokens_per_s: float | None = None) -> None:
        self.successes += 1
        self.consecutive = 0
        self.probing = False
        self.opened_until = 0.0
        self.last_cooldown = 0.0
        self.reason = ""
        self._record(True)
        if latency is not None:
            self.latency = _average(self.latency, latency)
        if tokens_per_s is not None:
            self.throughput = _average(self.throughput, tokens_per_s)

    def neutral(self) -> None:
        """The request ended without saying anything about the provider (a client error)."""
        self.probing = False

    def failure(self, reason: str, *, retry_after: float | None = None, auth: bool = False) -> None:
        self.failures += 1
        self.consecutive += 1
        self.reason = reason
        now = time.monotonic()
        self._record(False, now)
        if retry_after is not None:
            self._open(now, min(retry_after, self.policy.ceiling), exact=True)
        elif auth:
            self._open(now, self.policy.auth_cooldown, exact=True)
        elif self.probing or self.consecutive >= self.policy.threshold or self._rate_exceeded():
            self._open(now, self.policy.cooldown)
        self.probing = False

    def _open(self, now: float, seconds: float, *, exact: bool = False) -> None:
        if not exact:
            # Reopened without a success in between: the cooldown doubles.
            previous = self.last_cooldown
            seconds = min(self.policy.ceiling, previous * 2 if previous else seconds)
        self.last_cooldown = max(seconds, 0.001)
        self.opened_until = max(
            self.opened_until if self.state(now) == OPEN else 0.0, now + seconds
        )
        self.opens += 1

    def _record(self, ok: bool, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.outcomes.append((now, ok))
        horizon = now - self.policy.window
        while self.outcomes and self.outcomes[0][0] < horizon:
            self.outcomes.popleft()

    def _rate_exceeded(self) -> bool:
        if len(self.outcomes) < self.policy.min_samples:
            return False
        failed = sum(1 for _, ok in self.outcomes if not ok)
        return failed / len(self.outcomes) > self.policy.rate

    def score(self) -> float:
        """Lower is better: requests in flight times the observed latency."""
        latency = self.latency if self.latency is not None else 0.05
        return (self.outstanding + 1) * latency

    def view(self) -> dict[str, Any]:
        """What ``GET /v1/providers`` shows (no secrets)."""
        retry = self.retry_in()
        return {
            "state": self.state(),
            "cooldown_remaining_s": round(retry, 3) if retry else 0,
            "last_failure": self.reason or None,
            "consecutive_failures": self.consecutive,
            "outstanding": self.outstanding,
            "latency_ms": None if self.latency is None else round(self.latency * 1000, 2),
            "throughput_tps": None if self.throughput is None else round(self.throughput, 1),
            "successes": self.successes,
            "failures": self.failures,
            "opened": self.opens,
        }


def _average(old: float | None, new: float) -> float:
    if old is None or not math.isfinite(old):
        return new
    return old + _ALPHA * (new - old)
