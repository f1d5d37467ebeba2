"""A pampero node as a worker for the field's routers: vLLM's metric names and cached tokens.

SGLang's model gateway, vllm-router and the Gateway API inference extension (llm-d, KServe)
balance workers by scraping ``/metrics`` for vLLM's series (``vllm:num_requests_waiting``,
``vllm:kv_cache_usage_perc``, ...), labelled ``model_name``. These tests scrape a real node and
check each series' name, type and label, and that the values move with load: a request held
running, a second one queued behind it (the node has one sequence slot), counters and
histograms after a request. ``usage.prompt_tokens_details.cached_tokens`` reports the prompt
prefix reused from the node's KV cache, in chat and completions, streamed and not.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e import sse
from tests.e2e.harness import MODEL_ID, Api, Launcher, Metrics

pytestmark = pytest.mark.e2e

GAUGES = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",  # the older name, which SGLang's model gateway reads
    "vllm:gpu_prefix_cache_hit_rate",
)
COUNTERS = (
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
)
HISTOGRAMS = (
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
)
LABEL = {"model_name": MODEL_ID}


@pytest.fixture(scope="module")
def node(launch: Launcher) -> Iterator[Api]:
    """One sequence slot, so a second request waits while the first runs."""
    with launch("--threads", "1", "--max-seqs", "1") as server:
        client = server.api()
        yield client
        client.close()


def vllm(metrics: Metrics, sample: str) -> float:
    return metrics.value(sample, **LABEL)


def wait_for(api: Api, predicate: Callable[[Metrics], bool], timeout: float = 60) -> Metrics:
    deadline = time.monotonic() + timeout
    metrics = api.metrics()
    while not predicate(metrics) and time.monotonic() < deadline:
        time.sleep(0.05)
        metrics = api.metrics()
    return metrics


def test_vllm_series_have_vllms_names_types_and_label(node):
    node.chat("Say hi.", max_tokens=2)
    metrics = node.metrics()
    for names, kind in ((GAUGES, "gauge"), (COUNTERS, "counter"), (HISTOGRAMS, "histogram")):
        for name in names:
            family = metrics.families[name]
            assert family.type == kind, (name, family.type)
            assert family.samples, name
            assert all(s.labels.get("model_name") == MODEL_ID for s in family.samples), name
            assert all("model" not in s.labels for s in family.samples), name
    (lora,) = metrics.families["vllm:lora_requests_info"].samples  # no adapters, none running
    assert lora.labels == {
        "max_lora": "0",
        "running_lora_adapters": "",
        "waiting_lora_adapters": "",
    }
    assert abs(lora.value - time.time()) < 60
    assert metrics.text.count("vllm:prompt_tokens_total{") == 1
    assert "vllm:prompt_tokens_created" not in metrics.text
    assert 0.0 <= vllm(metrics, "vllm:kv_cache_usage_perc") <= 1.0


def test_counters_and_histograms_move_with_a_request(node):
    before = node.metrics()
    usage = node.chat("Name three rivers.", max_tokens=5, ignore_eos=True)["usage"]
    after = wait_for(
        node,
        lambda m: (
            vllm(m, "vllm:e2e_request_latency_seconds_count")
            > vllm(before, "vllm:e2e_request_latency_seconds_count")
        ),
    )

    def moved(sample: str) -> float:
        return vllm(after, sample) - vllm(before, sample)

    assert moved("vllm:prompt_tokens_total") == usage["prompt_tokens"]
    assert moved("vllm:generation_tokens_total") == usage["completion_tokens"] == 5
    assert moved("vllm:prefix_cache_queries_total") == usage["prompt_tokens"]
    assert moved("vllm:prefix_cache_hits_total") == usage["prompt_tokens_details"]["cached_tokens"]
    assert moved("vllm:time_to_first_token_seconds_count") == 1
    assert moved("vllm:time_to_first_token_seconds_sum") > 0
    assert 1 <= moved("vllm:inter_token_latency_seconds_count") <= 4
    assert moved("vllm:e2e_request_latency_seconds_count") == 1
    queries = vllm(after, "vllm:prefix_cache_queries_total")
    hit_rate = vllm(after, "vllm:prefix_cache_hits_total") / queries
    assert vllm(after, "vllm:gpu_prefix_cache_hit_rate") == pytest.approx(hit_rate)
    # the pampero series the vLLM ones are read from say the same
    assert vllm(after, "vllm:prompt_tokens_total") == after.value(
        "pampero_prompt_tokens_total", model=MODEL_ID
    )


def test_gauges_follow_a_running_and_a_waiting_request(node):
    idle = node.metrics()
    assert vllm(idle, "vllm:num_requests_running") == 0
    assert vllm(idle, "vllm:num_requests_waiting") == 0
    assert vllm(idle, "vllm:kv_cache_usage_perc") == 0
    body = node.chat_body("Count from one to five hundred in words.", {})
    body.update(stream=True, max_tokens=400, ignore_eos=True)
    queued: list[dict[str, Any]] = []
    second = threading.Thread(
        target=lambda: queued.append(node.chat("Say ok.", max_tokens=2, ignore_eos=True))
    )
    with node.http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        sse.next_data(lines)  # the first chunk: the request holds the only slot
        second.start()
        loaded = wait_for(node, lambda m: vllm(m, "vllm:num_requests_waiting") >= 1)
        assert vllm(loaded, "vllm:num_requests_running") == 1
        assert vllm(loaded, "vllm:num_requests_waiting") == 1
        usage = vllm(loaded, "vllm:kv_cache_usage_perc")
        assert 0 < usage < 1
        assert vllm(loaded, "vllm:gpu_cache_usage_perc") == usage
        kv_used = loaded.value("pampero_kv_cache_used_tokens", model=MODEL_ID)
        kv_total = loaded.value("pampero_kv_cache_capacity_tokens", model=MODEL_ID)
        assert usage == pytest.approx(kv_used / kv_total)
    # leaving the stream aborts it; the queued request then runs and finishes
    second.join(timeout=120)
    assert queued and queued[0]["choices"][0]["finish_reason"] == "length"
    drained = wait_for(
        node,
        lambda m: (
            vllm(m, "vllm:num_requests_running") == 0 and vllm(m, "vllm:kv_cache_usage_perc") == 0
        ),
    )
    assert vllm(drained, "vllm:num_requests_waiting") == 0
    assert vllm(drained, "vllm:kv_cache_usage_perc") == 0


def long_prompt() -> str:
    """About 300 tokens that begin with text no earlier request had."""
    rows = " ".join(f"Row {i}: sensor {i % 7} read {i * 13 % 97} units." for i in range(30))
    return f"Report {secrets.token_hex(6)}. Summarise these readings in one line. {rows}"


def chat_usage(api: Api, prompt: str) -> dict[str, Any]:
    usage: dict[str, Any] = api.chat(prompt, max_tokens=2)["usage"]
    return usage


def streamed_chat_usage(api: Api, prompt: str) -> dict[str, Any]:
    result = api.stream_chat(prompt, max_tokens=2, stream_options={"include_usage": True})
    assert result.usage is not None
    return result.usage


def completion_usage(api: Api, prompt: str) -> dict[str, Any]:
    usage: dict[str, Any] = api.complete(prompt, max_tokens=2)["usage"]
    return usage


def streamed_completion_usage(api: Api, prompt: str) -> dict[str, Any]:
    result = api.stream_complete(prompt, max_tokens=2, stream_options={"include_usage": True})
    assert result.usage is not None
    return result.usage


@pytest.mark.parametrize(
    "ask",
    [chat_usage, streamed_chat_usage, completion_usage, streamed_completion_usage],
    ids=["chat", "chat-stream", "completions", "completions-stream"],
)
def test_the_same_long_prompt_twice_is_reported_cached(node, ask):
    prompt = long_prompt()
    first = ask(node, prompt)
    second = ask(node, prompt)
    assert first["prompt_tokens"] == second["prompt_tokens"] > 250
    cached_first = first["prompt_tokens_details"]["cached_tokens"]
    cached_second = second["prompt_tokens_details"]["cached_tokens"]
    # The first time only a template head at most (chat's system prompt) can be cached; the
    # second time everything but the last prompt token, which is decoded again for its logits.
    assert cached_first < 40
    assert cached_second == second["prompt_tokens"] - 1
