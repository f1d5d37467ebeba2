"""Two pampero nodes behind SGLang's model gateway (``smg``), as the field's routers run them.

One module-wide fleet: two ``pampero serve`` nodes (one thread each) on loopback and ``smg
launch`` in front of them with its cache-aware policy. smg finds out by itself what a node is
(``/version`` answers, so it treats it as vLLM) and schedules it from ``/metrics`` under vLLM's
names. Which node served each request is read from the nodes' own request counters
(``pampero_requests_total``), one request at a time.

smg's warm-up slices (``--worker-warmup-*``), which now and then send a request that has a
holder to a node with a thinner cache on purpose, are switched off so that affinity can be
asserted exactly.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.docs_blocks import PAMPERO_FLEET, examples, section_examples
from tests.e2e.gateway_smg import Gateway, smg_binary, start_smg
from tests.e2e.harness import MODEL_ID, Launcher, Metrics, Server, run_snippets

pytestmark = pytest.mark.e2e

ROUTE = {"route": "/v1/chat/completions"}  # any status: a stream the client left counts too
SMG_FLAGS = (
    "--policy", "cache_aware",
    "--worker-warmup-secs", "0", "--worker-warmup-divert-every", "0",
    "--load-monitor-interval", "1",
)  # fmt: skip


@dataclass
class Fleet:
    nodes: list[Server]
    gateway: Gateway
    client: openai.OpenAI

    def served(self) -> list[float]:
        """Each node's count of answered chat requests."""
        return [
            Metrics(httpx.get(node.url + "/metrics", timeout=10).text).value(
                "pampero_requests_total", **ROUTE
            )
            for node in self.nodes
        ]

    def serving_node(self, before: list[float]) -> int:
        """The one node whose chat counter moved since ``before`` (the counter is bumped just
        after the response is out, so wait a moment for it)."""
        deadline = time.monotonic() + 5
        after = self.served()
        while sum(after) == sum(before) and time.monotonic() < deadline:
            time.sleep(0.05)
            after = self.served()
        moved = [i for i, (a, b) in enumerate(zip(after, before, strict=True)) if a != b]
        assert len(moved) == 1 and sum(after) - sum(before) == 1, (before, after)
        return moved[0]


@pytest.fixture(scope="module")
def fleet(launch: Launcher, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    binary = smg_binary()
    if binary is None:
        pytest.skip(
            "SGLang's model gateway is not installed (the `smg` wheel, pampero's `fleet` extra; "
            "scripts/install.sh test installs it)"
        )
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(launch("--threads", "1")) for _ in range(2)]
        gateway = start_smg(
            binary, [n.url for n in nodes], tmp_path_factory.mktemp("smg"), *SMG_FLAGS
        )
        stack.callback(gateway.stop)
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)
        stack.callback(client.close)
        yield Fleet(nodes, gateway, client)


def test_chat_through_the_gateway(fleet):
    before = fleet.served()
    reply = fleet.client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "Say hello in Spanish."}],
        max_tokens=8,
        temperature=0,
    )
    assert reply.model == MODEL_ID
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    fleet.serving_node(before)


def test_streaming_through_the_gateway(fleet):
    before = fleet.served()
    stream = fleet.client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    usage = chunks[-1].usage  # the last chunk: usage only, as OpenAI sends it
    assert not chunks[-1].choices
    assert usage is not None and usage.completion_tokens == 12
    fleet.serving_node(before)


TOPICS = ("lighthouses", "volcanoes")


def opening(topic: str) -> list[dict[str, Any]]:
    """A conversation whose text starts with its own topic, so no two share a prefix."""
    facts = " ".join(f"Fact {i} about {topic}: entry {i * 7 % 11}." for i in range(10))
    return [{"role": "user", "content": f"{topic.title()} notes. {facts} Summarise in a line."}]


def ask(fleet: Fleet, messages: list[dict[str, Any]], turn: int) -> tuple[int, int, int]:
    """One turn through the gateway: (serving node, cached tokens, prompt tokens); the reply
    and the next question join ``messages``."""
    before = fleet.served()
    reply = fleet.client.chat.completions.create(
        model=MODEL_ID, messages=messages, max_tokens=6, temperature=0
    )
    node = fleet.serving_node(before)
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    messages.append({"role": "assistant", "content": reply.choices[0].message.content})
    messages.append({"role": "user", "content": f"Turn {turn + 2}: and one more fact?"})
    return node, usage.prompt_tokens_details.cached_tokens or 0, usage.prompt_tokens


def running(fleet: Fleet) -> list[float]:
    """Each node's ``vllm:num_requests_running``."""
    return [
        Metrics(httpx.get(n.url + "/metrics", timeout=10).text).value(
            "vllm:num_requests_running", model_name=MODEL_ID
        )
        for n in fleet.nodes
    ]


def test_cache_aware_policy_keeps_each_conversation_on_one_node(fleet):
    """smg's cache-aware policy sends a prompt that matches nothing it routed before to the
    least loaded node, and a prompt that continues a conversation to the node that served it.

    Conversation A opens with a long stream; while it runs, conversation B opens and goes to
    the other node. Then both go on, turn by turn, interleaved, each turn resending the
    history: every turn returns to its conversation's node."""
    conversations = {topic: opening(topic) for topic in TOPICS}
    (a, a_messages), (b, b_messages) = conversations.items()
    home: dict[str, int] = {}
    before = sum(fleet.served())
    stream = fleet.client.chat.completions.create(
        model=MODEL_ID,
        messages=a_messages,
        max_tokens=1000,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    with stream:
        chunks = iter(stream)
        said = ""
        while not said:
            chunk = next(chunks)
            said = chunk.choices[0].delta.content or "" if chunk.choices else ""
        busy = running(fleet)
        assert sorted(busy) == [0, 1], busy
        home[a] = busy.index(1)
        home[b] = ask(fleet, b_messages, 0)[0]
    deadline = time.monotonic() + 30  # A's stream, left, is counted once the node aborts it
    while sum(fleet.served()) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum(fleet.served()) == before + 2
    a_messages.append({"role": "assistant", "content": said})
    a_messages.append({"role": "user", "content": "Turn 2: and one more fact?"})
    assert home[a] != home[b], home
    for turn in (1, 2):
        for topic, messages in conversations.items():
            assert ask(fleet, messages, turn)[0] == home[topic], (topic, turn, home)


def test_later_turns_reuse_the_nodes_cache(fleet):
    """Through the gateway, a conversation's later turns find their history in the serving
    node's KV cache. One conversation at a time: the node's scheduler gives a new prompt the
    free slot sharing the longest prefix, and with the chat template's common system head that
    is another conversation's slot, so conversations interleaved on one node evict each other
    (reported to the scheduler's prefix-cache work; docs/deploy.md)."""
    messages = opening("deserts")
    turns = [ask(fleet, messages, turn) for turn in range(3)]
    assert len({node for node, _, _ in turns}) == 1, turns
    for _, cached, prompt in turns[1:]:
        assert cached > prompt * 0.8, turns


def test_the_gateway_reads_the_nodes_load_from_their_vllm_metrics(fleet):
    """A long stream runs on one node; smg's own view of worker loads (``/get_loads``, built
    from each node's ``vllm:num_requests_running``) shows it there."""
    stream = fleet.client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "Write the numbers from one to three hundred."}],
        max_tokens=400,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    with stream:
        next(iter(stream))
        busy = running(fleet)
        deadline = time.monotonic() + 30  # the first chunk may come before the engine step
        while sorted(busy) != [0, 1] and time.monotonic() < deadline:
            time.sleep(0.1)
            busy = running(fleet)
        assert sorted(busy) == [0, 1], busy
        node_url = fleet.nodes[busy.index(1)].url
        deadline = time.monotonic() + 15  # smg polls every second here
        seen: dict[str, int] = {}
        while time.monotonic() < deadline and seen.get(node_url, 0) < 1:
            time.sleep(0.2)
            loads = httpx.get(fleet.gateway.url + "/get_loads", timeout=10).json()["loads"]
            seen = {load["worker"]: load["num_running_reqs"] for load in loads}
        assert seen.get(node_url) == 1, seen


def test_the_deploy_pages_examples_run_against_the_gateway(fleet, pampero_env):
    """docs/deploy.md's examples (the curl and the two Python ones), as written but for the
    gateway's port."""
    elsewhere = section_examples("deploy.md", PAMPERO_FLEET)  # tests/e2e/test_fleet_prefix.py
    found = [block for block in examples("deploy.md") if block not in elsewhere]
    assert [b.runner for b in found] == ["curl", "python", "python"]
    names = ["curl", "english", "spanish"]
    snippets = {name: (str(b.runner), b.code) for name, b in zip(names, found, strict=True)}
    gateway = fleet.gateway.url.removeprefix("http://")
    runs = run_snippets(
        snippets, {"127.0.0.1:8000": gateway, "localhost:8000": gateway}, pampero_env
    )
    outputs = {name: run.ok() for name, run in runs.items() if run is not None}
    assert {"english", "spanish"} <= set(outputs)
    if "curl" in outputs:  # curl may be missing; Python is not
        body = json.loads(outputs["curl"])
        assert body["model"] == MODEL_ID and body["choices"][0]["message"]["content"], body
        assert body["usage"]["completion_tokens"] <= 40
    assert re.search(r"cached prompt tokens: \d+", outputs["english"]), outputs["english"]
    spanish = outputs["spanish"]
    cached = [int(n) for n in re.findall(r"tokens del prompt en caché: (\d+) de", spanish)]
    assert len(cached) == 2 and cached[1] > 0, spanish  # the second turn finds the first
