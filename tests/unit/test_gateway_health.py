"""The gateway's circuit breaker and routing policies, in-process (no time is slept: the
breaker is driven through its clock, ``time.monotonic``, by moving ``opened_until``)."""

from __future__ import annotations

import random
import time
from collections import Counter

from pampero.backends.base import ModelCard
from pampero.gateway.health import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, ProviderHealth
from pampero.gateway.policies import POLICIES, LeastOutstanding, SessionAffinity, Weighted
from pampero.gateway.router import Provider


def expire(health: ProviderHealth) -> None:
    health.opened_until = time.monotonic() - 0.001


def test_consecutive_failures_open_the_breaker_and_a_repeat_doubles_the_cooldown() -> None:
    health = ProviderHealth("a", BreakerPolicy(cooldown=10, ceiling=25, threshold=3))
    health.failure("500")
    health.failure("500")
    assert health.state() == CLOSED
    health.failure("500")
    assert health.state() == OPEN and 9 < health.retry_in() <= 10
    expire(health)
    assert health.state() == HALF_OPEN and health.available()
    health.admit()  # the one probe
    assert not health.available()  # nobody else while it is out
    health.release()
    health.failure("500")
    assert health.state() == OPEN and 19 < health.retry_in() <= 20  # doubled
    expire(health)
    health.admit()
    health.release()
    health.failure("500")
    assert 24 < health.retry_in() <= 25  # capped
    expire(health)
    health.admit()
    health.release()
    health.success(latency=0.1)
    assert health.state() == CLOSED and health.consecutive == 0


def test_retry_after_and_auth_set_the_cooldown_exactly() -> None:
    health = ProviderHealth("a", BreakerPolicy(cooldown=10, auth_cooldown=300))
    health.failure("429", retry_after=2.5)
    assert health.state() == OPEN and 2 < health.retry_in() <= 2.5
    other = ProviderHealth("b", BreakerPolicy(auth_cooldown=300))
    other.failure("401", auth=True)
    assert 299 < other.retry_in() <= 300


def test_a_failure_rate_over_the_window_opens_the_breaker() -> None:
    health = ProviderHealth("a", BreakerPolicy(threshold=100, rate=0.5, min_samples=10))
    for i in range(11):  # 4 successes, 7 failures, never 3 in a row
        if i % 3 == 0:
            health.success()
        else:
            health.failure("500")
        if i % 3 == 2:
            health.consecutive = 0
    assert health.state() == OPEN


def providers(*specs: tuple[str, float]) -> list[Provider]:
    return [
        Provider(name, _Backend(name), ProviderHealth(name), weight=weight)
        for name, weight in specs
    ]


class _Backend:
    def __init__(self, name: str) -> None:
        self.card = ModelCard(id="m", provider=name)


def test_least_outstanding_prefers_the_idle_provider() -> None:
    a, b = providers(("a", 1), ("b", 1))
    a.health.outstanding = 5
    policy = LeastOutstanding(random.Random(1))
    assert all(policy.order([a, b], None)[0] is b for _ in range(20))


def test_weights_share_the_load_and_weight_zero_is_a_standby() -> None:
    a, b, standby = providers(("a", 3), ("b", 1), ("s", 0))
    policy = Weighted(random.Random(7))
    firsts = Counter(policy.order([a, b, standby], None)[0].name for _ in range(2000))
    assert firsts["s"] == 0 and 0.68 < firsts["a"] / 2000 < 0.82
    assert policy.order([a, b, standby], None)[-1] is standby
    assert LeastOutstanding().order([standby, a], None) == [a, standby]


def test_session_affinity_keeps_a_session_on_one_provider() -> None:
    group = providers(("a", 1), ("b", 1), ("c", 1))
    policy = SessionAffinity()
    chosen = {policy.order(group, "session-1")[0].name for _ in range(10)}
    assert len(chosen) == 1
    spread = {policy.order(group, f"s{i}")[0].name for i in range(50)}
    assert spread == {"a", "b", "c"}


def test_policies_are_registered_by_name() -> None:
    assert {"least-outstanding", "weighted", "session"} <= set(POLICIES.available())
