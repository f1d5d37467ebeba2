"""The ``prefix`` routing policy (prefix-cache affinity), in-process: which provider a prompt
goes to, when load wins over affinity, and the index's bounds. Requests are parsed by the
same parser the edge uses."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import pytest

from pampero.backends.base import ModelCard
from pampero.gateway.gateway import Gateway
from pampero.gateway.health import ProviderHealth
from pampero.gateway.policies import POLICIES, LeastOutstanding
from pampero.gateway.prefix import PrefixAffinity, PrefixIndex, block_hashes, prompt_text
from pampero.gateway.router import Provider
from pampero.protocol import ChatCompletionRequest, Parsed, parse_chat_request
from pampero.settings import ModelConfig, Settings, UpstreamConfig


class _Backend:
    def __init__(self, name: str, model: str = "m") -> None:
        self.card = ModelCard(id=model, provider=name)


def providers(*specs: tuple[str, float]) -> list[Provider]:
    return [
        Provider(name, _Backend(name), ProviderHealth(name), weight=weight)  # type: ignore[arg-type]
        for name, weight in specs
    ]


def chat(messages: list[dict[str, Any]], **fields: Any) -> Parsed[ChatCompletionRequest]:
    body = {"model": "m", "messages": messages, **fields}
    return parse_chat_request(json.dumps(body).encode(), strict=False)


def opening(topic: str) -> list[dict[str, Any]]:
    facts = " ".join(f"Fact {i} about {topic}: entry {i * 7 % 11}." for i in range(12))
    return [{"role": "user", "content": f"{topic} notes. {facts} Summarise in a line."}]


def turn(messages: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [
        *messages,
        {"role": "assistant", "content": f"Answer number {n}, about as long as answers get."},
        {"role": "user", "content": f"Turn {n + 1}: and one more fact?"},
    ]


def first(policy: PrefixAffinity, group: list[Provider], messages: list[dict[str, Any]]) -> str:
    return policy.order(group, None, chat(messages))[0].name


def test_a_later_turns_text_starts_with_the_earlier_turns_text():
    messages = opening("lighthouses")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    earlier = prompt_text(chat(messages, tools=tools).raw)
    later = prompt_text(chat(turn(messages, 1), tools=tools).raw)
    assert later.startswith(earlier) and len(later) > len(earlier)
    assert earlier.index("tools") < earlier.index("lighthouses")  # tools render first
    without_tools = prompt_text(chat(messages).raw)
    assert block_hashes(without_tools)[0] != block_hashes(earlier)[0]


def test_an_image_stands_as_a_short_hash_of_itself():
    data = "data:image/png;base64," + "A" * 200_000
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": data}},
    ]
    text = prompt_text(chat([{"role": "user", "content": parts}]).raw)
    assert len(text) < 200 and "What is this?" in text
    other = [parts[0], {"type": "image_url", "image_url": {"url": data[:-1] + "B"}}]
    assert prompt_text(chat([{"role": "user", "content": other}]).raw) != text


def test_each_conversation_returns_to_the_provider_that_served_it():
    group = providers(("a", 1), ("b", 1), ("c", 1))
    policy = PrefixAffinity(rng=random.Random(3))
    conversations = {topic: opening(topic) for topic in ("lighthouses", "volcanoes", "deserts")}
    home = {topic: first(policy, group, messages) for topic, messages in conversations.items()}
    assert sorted(home.values()) == ["a", "b", "c"]  # idle and unmatched: the emptiest provider
    for n in range(1, 4):
        for topic in conversations:
            conversations[topic] = turn(conversations[topic], n)
            assert first(policy, group, conversations[topic]) == home[topic], (topic, n)


def test_unrelated_prompts_spread_by_load():
    group = providers(("a", 1), ("b", 1))
    policy = PrefixAffinity(rng=random.Random(5))
    group[0].health.outstanding = 2
    assert all(first(policy, group, opening(f"topic {i}")) == "b" for i in range(3))
    group[1].health.outstanding = 3
    assert first(policy, group, opening("topic 9")) == "a"


def test_a_holder_loaded_well_above_the_least_loaded_is_skipped():
    a, b = providers(("a", 1), ("b", 1))
    policy = PrefixAffinity(spill_abs=4, spill_rel=1.5, rng=random.Random(1))
    messages = opening("volcanoes")
    b.health.outstanding = 1  # a is emptier: the conversation starts there
    assert first(policy, [a, b], messages) == "a"
    messages = turn(messages, 1)
    a.health.outstanding, b.health.outstanding = 5, 1  # 4 above: not well above
    assert first(policy, [a, b], messages) == "a"
    messages = turn(messages, 2)
    a.health.outstanding, b.health.outstanding = 6, 1  # 5 above and 6x: spill
    assert first(policy, [a, b], messages) == "b"
    a.health.outstanding, b.health.outstanding = 0, 0
    messages = turn(messages, 3)
    assert first(policy, [a, b], messages) == "b"  # b now holds the longer prefix


def test_a_match_below_the_threshold_is_load_balanced():
    a, b = providers(("a", 1), ("b", 1))
    policy = PrefixAffinity(threshold=0.5, rng=random.Random(2))
    system = {"role": "system", "content": "You are a terse assistant. " * 6}
    b.health.outstanding = 1
    assert first(policy, [a, b], [system, {"role": "user", "content": "Hi"}]) == "a"
    a.health.outstanding, b.health.outstanding = 1, 0
    # the shared system head is most of this prompt: affinity, despite a's one request
    assert first(policy, [a, b], [system, {"role": "user", "content": "Hello"}]) == "a"
    long_question = {"role": "user", "content": "Tell me about the sea. " * 20}
    # but a small part of this one: the least loaded provider
    assert first(policy, [a, b], [system, long_question]) == "b"


def test_a_cooling_holder_is_passed_over_and_tried_last():
    a, b, standby = providers(("a", 1), ("b", 1), ("s", 0))
    policy = PrefixAffinity(rng=random.Random(4))
    messages = opening("deserts")
    b.health.outstanding = 1
    assert first(policy, [a, b, standby], messages) == "a"
    a.health.failure("500", retry_after=30)  # open breaker
    ordered = policy.order([a, b, standby], None, chat(turn(messages, 1)))
    assert [p.name for p in ordered] == ["b", "a", "s"]


def test_without_a_request_it_orders_by_load():
    a, b = providers(("a", 1), ("b", 1))
    a.health.outstanding = 3
    assert [p.name for p in PrefixAffinity().order([a, b], None)] == ["b", "a"]


def test_the_index_is_bounded_and_keeps_a_prompts_head_longest():
    index = PrefixIndex(capacity=8)
    first_prompt = block_hashes("p" * 64 * 6)
    index.insert("a", first_prompt)
    index.insert("a", block_hashes("q" * 64 * 4))
    assert index.size("a") == 8
    # two blocks of the first prompt went, its tail first: its head still matches
    assert index.matched("a", first_prompt) == 4
    index.forget("a")
    assert index.size("a") == 0 and index.matched("a", first_prompt) == 0
    with pytest.raises(ValueError):
        PrefixIndex(capacity=0)


def test_the_policy_is_safe_across_threads():
    group = providers(("a", 1), ("b", 1), ("c", 1))
    policy = PrefixAffinity(capacity=64)
    requests = [chat(opening(f"topic {i}")) for i in range(40)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(200):
                policy.order(group, None, requests[(offset + i) % len(requests)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and time.monotonic() - started < 60
    assert all(policy.index.size(p.name) <= 64 for p in group)
    assert sum(policy.index.size(p.name) for p in group) > 0


def test_prefix_is_registered_and_chosen_per_model():
    assert POLICIES.available()["prefix"] == "pampero.gateway.prefix:PrefixAffinity"
    settings = Settings(
        models=[ModelConfig(id="m", routing="prefix"), ModelConfig(id="other")],
        routing="least-outstanding",
    )
    gateway = Gateway(settings, [], None)
    gateway._add(_Backend("local", "m"))  # type: ignore[arg-type]
    gateway._add(_Backend("local", "other"))  # type: ignore[arg-type]
    assert isinstance(gateway.policies["m"], PrefixAffinity)
    assert isinstance(gateway.policies["other"], LeastOutstanding)
    assert settings.routing_for("unknown") == "least-outstanding"


def test_a_model_given_two_routings_is_refused():
    upstream = {
        "name": "node1",
        "url": "http://127.0.0.1:9",
        "models": [{"id": "m", "routing": "session"}],
    }
    with pytest.raises(ValueError, match="two routing policies"):
        Settings(models=[ModelConfig(id="m", routing="prefix")], upstreams=[upstream])
    same = Settings(
        models=[ModelConfig(id="m", routing="prefix")],
        upstreams=[
            UpstreamConfig.model_validate(
                {**upstream, "models": [{"id": "m", "routing": "prefix"}]}
            )
        ],
    )
    assert same.routing_for("m") == "prefix"
