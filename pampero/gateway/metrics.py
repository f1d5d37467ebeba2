"""The gateway's Prometheus metrics, registered in the app's one registry.

pampero_gateway_attempts_total{provider, outcome}   ok, failed, relayed (client errors)
pampero_gateway_cost_usd_total{provider}            usage.cost summed (priced providers)
pampero_gateway_tokens_total{provider, kind}        prompt / completion tokens
pampero_gateway_first_token_seconds{provider}       time to the first token (or answer)
pampero_gateway_provider_state{provider, state}     1 for the breaker's current state
pampero_gateway_provider_outstanding{provider}      requests in flight
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pampero.gateway.health import CLOSED, HALF_OPEN, OPEN, ProviderHealth

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _HealthCollector(Collector):
    def __init__(self, healths: Callable[[], Iterable[ProviderHealth]]) -> None:
        self.healths = healths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "pampero_gateway_provider_state",
            "Circuit breaker state of each provider (1 for the current state)",
            labels=["provider", "state"],
        )
        outstanding = GaugeMetricFamily(
            "pampero_gateway_provider_outstanding",
            "Requests in flight at each provider",
            labels=["provider"],
        )
        for health in self.healths():
            current = health.state()
            for name in (CLOSED, OPEN, HALF_OPEN):
                state.add_metric([health.name, name], 1.0 if current == name else 0.0)
            outstanding.add_metric([health.name], health.outstanding)
        yield state
        yield outstanding


class GatewayMetrics:
    def __init__(
        self, registry: CollectorRegistry, healths: Callable[[], Iterable[ProviderHealth]]
    ) -> None:
        self.attempts = Counter(
            "pampero_gateway_attempts",
            "Attempts at providers, by outcome",
            ["provider", "outcome"],
            registry=registry,
        )
        self.cost = Counter(
            "pampero_gateway_cost_usd",
            "usage.cost of answered requests, in USD",
            ["provider"],
            registry=registry,
        )
        self.tokens = Counter(
            "pampero_gateway_tokens",
            "Tokens of answered requests",
            ["provider", "kind"],
            registry=registry,
        )
        self.first_token = Histogram(
            "pampero_gateway_first_token_seconds",
            "Time from an attempt's start to its first token (non-streamed: its answer)",
            ["provider"],
            buckets=_BUCKETS,
            registry=registry,
        )
        registry.register(_HealthCollector(healths))
