"""Prometheus metrics, one registry per app (no process globals).

Counters and histograms are observed by serving code as it answers; gauges for engine state
(running sequences, queue depth, KV use) are read from the engines at scrape time.

Beside pampero's own series, ``/metrics`` repeats the ones routers schedule by under the names
and label (``model_name``) vLLM exports (``_EngineCollector``'s gauges, ``_VllmView``), so a
pampero node is a worker that SGLang's model gateway, vllm-router and the Gateway API
inference extension (llm-d, KServe) can balance by queue depth and KV use without knowing
pampero (docs/deploy.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
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
    """Engine state, read once per scrape, under pampero's names and vLLM's (label
    ``model_name``): ``vllm:num_requests_running``/``waiting``, ``vllm:kv_cache_usage_perc``
    (0..1, the KV cells held by running sequences over all cells) and its older name
    ``vllm:gpu_cache_usage_perc``, which SGLang's model gateway still reads."""

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
        vllm = ["model_name"]
        vllm_running = GaugeMetricFamily(
            "vllm:num_requests_running", "Requests being decoded", labels=vllm
        )
        vllm_waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting", "Requests waiting to be admitted", labels=vllm
        )
        usage = GaugeMetricFamily(
            "vllm:kv_cache_usage_perc", "KV cache usage, 1 = full", labels=vllm
        )
        usage_old = GaugeMetricFamily(
            "vllm:gpu_cache_usage_perc", "KV cache usage, 1 = full (older name)", labels=vllm
        )
        for model, stats in self._stats():
            running.add_metric([model], stats.running)
            waiting.add_metric([model], stats.waiting)
            kv_used.add_metric([model], stats.kv_used_tokens)
            kv_total.add_metric([model], stats.kv_capacity_tokens)
            vllm_running.add_metric([model], stats.running)
            vllm_waiting.add_metric([model], stats.waiting)
            capacity = stats.kv_capacity_tokens
            used = stats.kv_used_tokens / capacity if capacity else 0.0
            usage.add_metric([model], used)
            usage_old.add_metric([model], used)
        yield from (running, waiting, kv_used, kv_total)
        yield from (vllm_running, vllm_waiting, usage, usage_old)


# pampero's family -> vLLM's, for the counters and histograms routers read. vLLM counts its
# prefix cache in tokens: ``prefix_cache_queries`` are the prompt tokens looked up (all of them),
# ``prefix_cache_hits`` the ones found.
_VLLM_NAMES = (
    ("pampero_prompt_tokens", "vllm:prompt_tokens", "Number of prefill tokens processed"),
    ("pampero_generation_tokens", "vllm:generation_tokens", "Number of tokens generated"),
    ("pampero_prompt_tokens", "vllm:prefix_cache_queries", "Prompt tokens looked up"),
    ("pampero_prompt_tokens_cached", "vllm:prefix_cache_hits", "Prompt tokens found cached"),
    (
        "pampero_time_to_first_token_seconds",
        "vllm:time_to_first_token_seconds",
        "Time from arrival to the first generated token",
    ),
    (
        "pampero_inter_token_latency_seconds",
        "vllm:inter_token_latency_seconds",
        "Time between consecutive generated tokens",
    ),
    (
        "pampero_e2e_request_latency_seconds",
        "vllm:e2e_request_latency_seconds",
        "Time from arrival to the last byte",
    ),
)


class _VllmView(Collector):
    """pampero's counters and histograms again under vLLM's names, read from them at scrape
    time (one source), with ``vllm:gpu_prefix_cache_hit_rate`` (vLLM 0.x's gauge: hits over
    queries since start, read by SGLang's model gateway) and ``vllm:lora_requests_info``."""

    def __init__(self, sources: Iterable[Collector]) -> None:
        self._sources = tuple(sources)

    def collect(self) -> Iterator[Metric]:
        families = {f.name: f for source in self._sources for f in source.collect()}
        for source, target, documentation in _VLLM_NAMES:
            yield _renamed(families[source], target, documentation)
        hit_rate = GaugeMetricFamily(
            "vllm:gpu_prefix_cache_hit_rate",
            "Prompt tokens found in the prefix cache over those looked up, since start",
            labels=["model_name"],
        )
        hits = _totals(families["pampero_prompt_tokens_cached"])
        for model, looked_up in _totals(families["pampero_prompt_tokens"]).items():
            hit_rate.add_metric([model], hits.get(model, 0.0) / looked_up if looked_up else 0.0)
        yield hit_rate
        yield _lora_info()


def _lora_info() -> GaugeMetricFamily:
    """vLLM's LoRA state, which the inference extension's endpoint picker reads (some versions
    count a worker without it as unhealthy): pampero serves no adapters, so none run or wait.
    The value is when the state was read, as in vLLM."""
    info = GaugeMetricFamily(
        "vllm:lora_requests_info",
        "Running stats on LoRA requests",
        labels=["max_lora", "running_lora_adapters", "waiting_lora_adapters"],
    )
    info.add_metric(["0", "", ""], time.time())
    return info


def _renamed(family: Metric, name: str, documentation: str) -> Metric:
    """``family`` under ``name``, its ``model`` label as ``model_name``, without ``_created``."""
    renamed = Metric(name, documentation, family.type)
    for sample in family.samples:
        if sample.name.endswith("_created"):
            continue
        labels = {("model_name" if k == "model" else k): v for k, v in sample.labels.items()}
        renamed.add_sample(name + sample.name[len(family.name) :], labels, sample.value)
    return renamed


def _totals(family: Metric) -> dict[str, float]:
    """A counter family's ``_total`` per model."""
    return {s.labels["model"]: s.value for s in family.samples if s.name == family.name + "_total"}


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
        self.cached_prompt_tokens = Counter(
            "pampero_prompt_tokens_cached",
            "Prompt tokens whose KV was reused from the prefix cache",
            ["model"],
            registry=self.registry,
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
        # Speculative decoding: acceptance rate = accepted / draft (vLLM's spec_decode pair).
        self.draft_tokens = Counter(
            "pampero_speculative_draft_tokens",
            "Speculative draft tokens verified by the model",
            ["model"],
            registry=self.registry,
        )
        self.accepted_draft_tokens = Counter(
            "pampero_speculative_accepted_tokens",
            "Speculative draft tokens the model accepted",
            ["model"],
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(engine_stats))
        own = (
            self.prompt_tokens,
            self.generation_tokens,
            self.cached_prompt_tokens,
            self.time_to_first_token,
            self.inter_token_latency,
            self.request_latency,
        )
        self.registry.register(_VllmView(own))

    def render(self) -> bytes:
        return generate_latest(self.registry)
