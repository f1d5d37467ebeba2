"""docs/gateway.md's examples, run as written: its set-up block starts two ``pampero serve``
nodes (a key each, one thread) and a pure gateway in front of them, then its curl and Python
examples talk to that gateway. Only the ports change (``tests/e2e/doc_commands.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.docs_blocks import blocks, examples
from tests.e2e.doc_commands import Ports, environment, serving
from tests.e2e.harness import GATEWAY_CHAT_EXTRAS, MODEL_ID, Server, SnippetRun, run_snippets
from tests.spec.validate import validate_against

pytestmark = pytest.mark.e2e

PAGE = "gateway.md"
CLIENT = {"authorization": "Bearer sk-cliente"}  # the gateway's key in the page's set-up


def set_up_block() -> list[str]:
    """The page's one runnable set-up block: the nodes, then the gateway."""
    (found,) = (
        b
        for b in blocks(PAGE)
        if b.language == "bash" and b.runner is None and "pampero serve" in b.code
    )
    return found.commands


@pytest.fixture(scope="module")
def fleet(
    pampero_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Ports, list[Server]]]:
    ports = Ports()
    log_dir: Path = tmp_path_factory.mktemp("docs-gateway")
    with serving(set_up_block(), ports, environment(pampero_env), log_dir) as servers:
        wait_listed(servers[-1])
        yield ports, servers


def wait_listed(gateway: Server, timeout: float = 120) -> None:
    """The gateway lists its upstreams' models once discovery has read them (a node may still
    be loading its model when the gateway starts): what a user waits for before the curl."""
    deadline = time.monotonic() + timeout
    while True:
        listed = httpx.get(gateway.url + "/v1/models", headers=CLIENT, timeout=10).json()
        if any(m["id"] == MODEL_ID for m in listed.get("data", [])):
            return
        assert time.monotonic() < deadline, listed
        time.sleep(0.2)


@pytest.fixture(scope="module")
def runs(fleet: tuple[Ports, list[Server]], pampero_env: dict[str, str]) -> list[SnippetRun | None]:
    ports, _ = fleet
    found = examples(PAGE)
    snippets = {str(i): (str(b.runner), ports.localise(b.code)) for i, b in enumerate(found)}
    done = run_snippets(snippets, {}, environment(pampero_env))
    return [done[str(i)] for i in range(len(found))]


def test_the_set_up_block_serves_two_keyed_nodes_behind_a_pure_gateway(fleet) -> None:
    _, servers = fleet
    *nodes, gateway = servers
    assert len(nodes) == 2
    for node in nodes:  # the nodes want their own key, which the client never sees
        assert httpx.get(node.url + "/v1/models", timeout=10).status_code == 401
    client = CLIENT
    providers = httpx.get(gateway.url + "/v1/providers", headers=client, timeout=10).json()
    names = {p["id"] for p in providers["data"]}
    assert names == {"a", "b"}, providers  # a pure gateway: no "local" provider
    listed = httpx.get(gateway.url + "/v1/models", headers=client, timeout=10).json()
    assert {"openai/gpt-4o", MODEL_ID} <= {m["id"] for m in listed["data"]}


def test_the_page_has_the_examples_run_here(runs) -> None:
    assert [b.runner for b in examples(PAGE)] == ["curl", "curl", "python"]


def test_the_tokenize_example_reaches_a_node(runs) -> None:
    tokenize = runs[0]
    if tokenize is None:
        pytest.skip("curl is not installed")
    body = json.loads(tokenize.ok())
    assert body["count"] == len(body["tokens"]) > 0, body


def test_the_curl_example_prefers_a_provider_that_keeps_no_data(runs) -> None:
    """Answered at all only because both upstreams are declared ``data_collection=deny``."""
    curl = runs[1]
    if curl is None:
        pytest.skip("curl is not installed")
    body = json.loads(curl.ok())
    validate_against("CreateChatCompletionResponse", body, allow_extra=GATEWAY_CHAT_EXTRAS)
    assert body["model"] == "openai/gpt-4o"
    assert body["provider"] in ("a", "b")
    assert body["choices"][0]["message"]["content"].strip()
    assert body["usage"]["completion_tokens"] <= 60


def test_the_python_example_prints_the_provider_and_the_story(runs) -> None:
    python = runs[2]
    assert python is not None
    provider, _, story = python.ok().partition(" ")
    assert provider == "a", python.stdout  # provider.order puts "a" first, and it is healthy
    assert story.strip()
