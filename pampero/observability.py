"""Prometheus metrics, one registry per app (no process globals).

Counters and histograms are observed by serving code as it answers; gauges for engine state
(running sequences, queue depth, KV use) are read from the engines at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pampero.inference import EngineStats

_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class _EngineCollector(Collector):
    def __init__(self, stats: Callable[[], Iterable[tuple[str, EngineStats]]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        running = GaugeMetricFamily(
            "pampero_requests_running", "Sequences being decoded", labels=["model"]
        )
        waiting = GaugeMetricFamily(
            "pampero_requests_waiting", "Requests queued for admission", labels=["model"]
        )
        kv_used = GaugeMetricFamily(
            "pampero_kv_cache_used_tokens", "KV cells held by running sequences", labels=["model"]
        )
        kv_total = GaugeMetricFamily(
            "pampero_kv_cache_capacity_tokens", "KV cells available", labels=["model"]
        )
        for model, stats in self._stats():
            running.add_metric([model], stats.running)
            waiting.add_metric([model], stats.waiting)
            kv_used.add_metric([model], stats.kv_used_tokens)
            kv_total.add_metric([model], stats.kv_capacity_tokens)
        yield from (running, waiting, kv_used, kv_total)


class Metrics:
    """Everything pampero exports on ``GET /metrics``."""

    def __init__(self, engine_stats: Callable[[], Iterable[tuple[str, EngineStats]]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pampero_requests",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "pampero_prompt_tokens", "Prompt tokens processed", ["model"], registry=self.registry
        )
        self.generation_tokens = Counter(
            "pampero_generation_tokens", "Tokens generated", ["model"], registry=self.registry
        )
        self.time_to_first_token = Histogram(
            "pampero_time_to_first_token_seconds",
            "Time from request arrival to the first generated token",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inter_token_latency = Histogram(
            "pampero_inter_token_latency_seconds",
            "Time between consecutive generated tokens of one sequence",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "pampero_e2e_request_latency_seconds",
            "Time from request arrival to its last byte",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(engine_stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)
