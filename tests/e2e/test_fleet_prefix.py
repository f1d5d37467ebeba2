"""pampero's gateway in front of two keyed pampero nodes, routing by prefix-cache affinity.

One module-wide fleet: two ``pampero serve`` nodes (one thread each) that require an API key
but serve ``/metrics`` without one (``--metrics-public``, as routers and Prometheus scrape
them), and a pampero gateway in front of them (no local model) whose config gives the default
model the ``prefix`` routing and reaches the nodes with their key. Which node answered is read
from the answer's ``provider`` field and checked against the nodes' own request counters, read
from their keyless ``/metrics``.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from pampero.api.app import create_app
from pampero.api.middleware import is_open_path
from pampero.settings import Settings
from tests.docs_blocks import PAMPERO_FLEET, section_examples
from tests.e2e.harness import MODEL_ID, Launcher, Metrics, Server, run_snippets
from tests.upstreams.client import write_config

pytestmark = pytest.mark.e2e

NAMES = ("n1", "n2")
ROUTE = {"route": "/v1/chat/completions"}


@dataclass
class Fleet:
    nodes: dict[str, Server]
    gateway: Server
    client: openai.OpenAI
    key: str

    def served(self) -> dict[str, float]:
        """Each node's count of chat requests, from its ``/metrics`` read without a key."""
        counts = {}
        for name, node in self.nodes.items():
            response = httpx.get(node.url + "/metrics", timeout=10)
            assert response.status_code == 200, response.text
            counts[name] = Metrics(response.text).value("pampero_requests_total", **ROUTE)
        return counts

    def wait_served(self, total: float) -> dict[str, float]:
        """The counters once they add up to ``total`` (bumped just after a response is out)."""
        deadline = time.monotonic() + 10
        counts = self.served()
        while sum(counts.values()) < total and time.monotonic() < deadline:
            time.sleep(0.05)
            counts = self.served()
        return counts


@pytest.fixture(scope="module")
def fleet(launch: Launcher, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    key = "sk-node-" + secrets.token_hex(8)
    with contextlib.ExitStack() as stack:
        nodes = {
            name: stack.enter_context(
                launch("--threads", "1", "--api-key", key, "--metrics-public")
            )
            for name in NAMES
        }
        config = {
            "routing": "least-outstanding",  # the model's own routing below wins
            "upstreams": [
                {
                    "name": name,
                    "url": node.url,
                    "key_env": "FLEET_NODE_KEY",
                    "models": [{"id": MODEL_ID, "routing": "prefix"}],
                }
                for name, node in nodes.items()
            ],
        }
        path = write_config(tmp_path_factory.mktemp("gateway") / "gateway.yaml", config)
        gateway = stack.enter_context(launch("--config", str(path), env={"FLEET_NODE_KEY": key}))
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)
        stack.callback(client.close)
        yield Fleet(nodes, gateway, client, key)


def opening(topic: str) -> list[dict[str, Any]]:
    """A conversation whose text starts with its own topic, so no two share a prefix."""
    facts = " ".join(f"Fact {i} about {topic}: entry {i * 7 % 11}." for i in range(10))
    return [{"role": "user", "content": f"{topic.title()} notes. {facts} Summarise in a line."}]


def ask(fleet: Fleet, messages: list[dict[str, Any]], turn: int) -> tuple[str, int, int]:
    """One turn through the gateway: (answering node, cached tokens, prompt tokens); the reply
    and the next question join ``messages``. The node's own counter must agree."""
    before = fleet.served()
    reply = fleet.client.chat.completions.create(
        model=MODEL_ID, messages=messages, max_tokens=6, temperature=0
    )
    provider = (reply.model_extra or {})["provider"]
    after = fleet.wait_served(sum(before.values()) + 1)
    assert {n for n in NAMES if after[n] != before[n]} == {provider}, (provider, before, after)
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    messages.append({"role": "assistant", "content": reply.choices[0].message.content})
    messages.append({"role": "user", "content": f"Turn {turn + 2}: and one more fact?"})
    return provider, usage.prompt_tokens_details.cached_tokens or 0, usage.prompt_tokens


def test_each_conversation_stays_on_its_node_and_finds_its_history_cached(fleet):
    """Two conversations open on an idle fleet: the second goes to the node that holds nothing
    of it (the emptier one). Then they go on, interleaved, each turn resending the history:
    every turn returns to its conversation's node and finds nearly all its prompt cached."""
    conversations = {topic: opening(topic) for topic in ("lighthouses", "volcanoes")}
    home = {topic: ask(fleet, messages, 0)[0] for topic, messages in conversations.items()}
    assert sorted(home.values()) == list(NAMES), home
    for turn in (1, 2):
        for topic, messages in conversations.items():
            node, cached, prompt = ask(fleet, messages, turn)
            assert node == home[topic], (topic, turn, home)
            assert cached > prompt * 0.8, (topic, turn, cached, prompt)


def test_unrelated_conversations_spread_over_the_nodes(fleet):
    """Openings that share nothing go to the least loaded node, ties to the one holding the
    least: one after the other they alternate, and at once they split by requests in flight."""
    one_by_one = [ask(fleet, opening(f"harbour {i}"), 0)[0] for i in range(4)]
    assert sorted(one_by_one) == ["n1", "n1", "n2", "n2"], one_by_one
    answered: list[str] = []
    errors: list[BaseException] = []

    def long_question(i: int) -> None:
        try:
            reply = fleet.client.chat.completions.create(
                model=MODEL_ID,
                messages=opening(f"glacier {i}"),
                max_tokens=48,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
            answered.append((reply.model_extra or {})["provider"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=long_question, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)  # each request is in flight before the next is routed
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert sorted(answered) == ["n1", "n1", "n2", "n2"], answered


def test_a_keyed_node_serves_metrics_without_the_key_and_nothing_else(fleet):
    """``--metrics-public`` opens /metrics alone: every other route of the node's route table
    (but /health, the pages and the API description, public anyway) still answers 401."""
    node = fleet.nodes["n1"]
    metrics = httpx.get(node.url + "/metrics", timeout=10)
    assert metrics.status_code == 200 and "vllm:num_requests_running" in metrics.text
    app = create_app(Settings(api_keys=[fleet.key]))  # the same route table; its lifespan unrun
    checked = 0
    with httpx.Client(base_url=node.url, timeout=30) as http:
        for route in app.routes:
            path = getattr(route, "path", "")
            methods = getattr(route, "methods", None) or set()
            if path == "/metrics" or is_open_path(path) or not methods:
                continue
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            for method in sorted(methods - {"HEAD"}):
                response = http.request(method, concrete, json={})
                assert response.status_code == 401, (method, path, response.status_code)
                checked += 1
    assert checked >= 20, checked
    assert httpx.get(node.url + "/v1/models", timeout=10).status_code == 401


def test_the_deploy_pages_fleet_examples_run_against_this_fleet(fleet, pampero_env):
    """docs/deploy.md's section on this recipe: its curl examples, as written but for the
    gateway's and the first node's ports (the page's set-up is this module's fixture)."""
    found = section_examples("deploy.md", PAMPERO_FLEET)
    assert [block.runner for block in found] == ["curl", "curl"]
    gateway = fleet.gateway.url.removeprefix("http://")
    node = fleet.nodes[NAMES[0]].url.removeprefix("http://")
    replacements = {"localhost:8000": gateway, "localhost:8001": node}
    runs = run_snippets(
        {name: ("curl", block.code) for name, block in zip(("en", "es"), found, strict=True)},
        replacements,
        pampero_env,
    )
    outputs = {name: run.ok() for name, run in runs.items() if run is not None}
    if not outputs:
        pytest.skip("curl is not installed")
    english = outputs["en"]
    answer, _ = json.JSONDecoder().raw_decode(english)  # jq's object, then grep's lines
    assert answer["provider"] in NAMES and isinstance(answer["cached"], int), english
    assert "vllm:num_requests_running" in english  # the keyless /metrics of a keyed node
    spanish = json.loads(outputs["es"])
    assert spanish["provider"] in NAMES and isinstance(spanish["en_cache"], int), spanish
