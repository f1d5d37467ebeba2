"""The gateway beyond chat: ``/v1/completions``, ``/tokenize`` and ``/detokenize`` for models
served only by upstreams, ``/v1/responses`` failing over or failing in band, and the session
header as a setting.

A pure gateway (no local model) fronts a real pampero node (``node``, the default model) and
fault upstreams on loopback (``tests/upstreams/fault.py``):

    upstream  serves           notes
    node      MODEL_ID         real: completions, /tokenize, /detokenize
    a         MODEL_ID         fault upstream: completions (scripted), no /tokenize (404)
    s1, s2    s                for session affinity (``session_header: x-conversation``)
    r1, r2    r                r2 has weight 0: r1 is always tried first (Responses requests
                               carry no ``provider`` object)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.e2e.harness import MODEL_ID, Launcher, Server
from tests.upstreams.client import post, stream
from tests.upstreams.fault import FaultUpstream
from tests.upstreams.gateway import (
    client_of,
    fault_upstreams,
    fresh_start,
    launched_gateway,
    upstream_entry,
)

pytestmark = pytest.mark.e2e

TIMEOUT = 1.0
PROMPT = "def add(a, b):"
SESSION_HEADER = "x-conversation"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, FaultUpstream]]:
    models = {"a": (MODEL_ID,), "s1": ("s",), "s2": ("s",), "r1": ("r",), "r2": ("r",)}
    with fault_upstreams(models) as started:
        yield started


@pytest.fixture(scope="module")
def node(launch: Launcher, tmp_path_factory) -> Iterator[Server]:
    config = {"threads": 1, "n_ctx": 512, "models": [{"id": MODEL_ID, "path": "default"}]}
    with launched_gateway(launch, tmp_path_factory, config) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(launch: Launcher, tmp_path_factory, upstreams, node) -> Iterator[Server]:
    timeouts = {"first_token_timeout": TIMEOUT, "stall_timeout": TIMEOUT}
    config = {
        "routing": "session",
        "session_header": SESSION_HEADER,
        "upstream_cooldown": 0.2,
        "upstream_max_cooldown": 0.5,  # r1 fails again and again: its cooldown must stay short
        "upstreams": [
            upstream_entry(upstreams["a"], **timeouts),
            {"name": "node", "url": node.url},
            upstream_entry(upstreams["s1"]),
            upstream_entry(upstreams["s2"]),
            upstream_entry(upstreams["r1"], **timeouts),
            upstream_entry(upstreams["r2"], weight=0),
        ],
    }
    with launched_gateway(launch, tmp_path_factory, config) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway: Server) -> Iterator[httpx.Client]:
    with client_of(gateway, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def direct(node: Server) -> Iterator[httpx.Client]:
    with client_of(node, timeout=120) as http:
        yield http


@pytest.fixture(autouse=True)
def fresh(client, upstreams):
    fresh_start(client, upstreams)


def completion(order: tuple[str, ...] = ("a", "node"), **fields: Any) -> dict[str, Any]:
    return {
        "model": MODEL_ID,
        "prompt": PROMPT,
        "max_tokens": 6,
        "temperature": 0,
        "provider": {"order": list(order), "only": list(order)},
        **fields,
    }


def providers_view(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in client.get("/v1/providers").json()["data"]}


# -- /v1/completions ---------------------------------------------------------------------------


def test_completions_reach_a_real_upstream_whole_and_streamed(gateway, client):
    response, _ = post(client, completion(order=("node",)), "/v1/completions")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "text_completion"
    assert answer["model"] == MODEL_ID and answer["provider"] == "node"
    assert response.headers["x-pampero-provider"] == "node"
    assert answer["choices"][0]["text"] and 0 < answer["usage"]["completion_tokens"] <= 6

    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)
    chunks = list(
        sdk.completions.create(
            model=MODEL_ID,
            prompt=PROMPT,
            max_tokens=6,
            temperature=0,
            stream=True,
            extra_body={"provider": {"only": ["node"]}},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert {c.model_extra["provider"] for c in chunks} == {"node"}
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_completions_are_forwarded_as_sent(client, upstreams):
    response, _ = post(client, completion(order=("a",), suffix="!", echo=False), "/v1/completions")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["text"] == "I am a."
    (sent,) = upstreams["a"].bodies
    assert upstreams["a"].paths == ["/v1/completions"]
    assert sent["prompt"] == PROMPT and sent["suffix"] == "!" and "provider" not in sent
    result = stream(client, completion(order=("a",)), "/v1/completions")
    assert result.status == 200 and result.done and result.text == "I am a."
    assert {e["object"] for e in result.events} == {"text_completion"}
    assert result.providers == {"a"}
    assert "usage" not in result.events[-1]  # asked for upstream (billing), not by the client


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("fault", ["status:500", "reset", "status:429:1"])
def test_completions_fail_over_before_the_first_token(client, upstreams, fault, streamed):
    upstreams["a"].reset(fault)
    if streamed:
        result = stream(client, completion(), "/v1/completions")
        assert result.status == 200 and result.done and result.text
        assert result.providers == {"node"}
        assert result.headers["x-pampero-attempts"] == "2"
    else:
        response, _ = post(client, completion(), "/v1/completions")
        assert response.status_code == 200, response.text
        assert response.json()["provider"] == "node"
        assert response.headers["x-pampero-attempts"] == "2"
    assert upstreams["a"].requests == 1


def test_an_upstream_without_completions_is_skipped_without_blame(client, upstreams):
    before = providers_view(client)["a"]
    upstreams["a"].reset("status:404")
    response, _ = post(client, completion(), "/v1/completions")
    assert response.status_code == 200, response.text
    assert response.json()["provider"] == "node"
    assert response.headers["x-pampero-attempts"] == "2" and upstreams["a"].requests == 1
    a = providers_view(client)["a"]
    assert a["state"] != "open" and a["failures"] == before["failures"]  # not blamed
    # With no other provider, the upstream's 404 is relayed in OpenAI's shape.
    upstreams["a"].reset("status:404")
    response, _ = post(client, completion(order=("a",)), "/v1/completions")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("fault", ["cut", "inband-mid", "stall-mid"])
def test_completions_failing_mid_stream_end_with_an_in_band_error(client, upstreams, fault):
    upstreams["a"].reset(fault)
    result = stream(client, completion(), "/v1/completions")
    assert result.status == 200 and result.done  # [DONE] after the error, never a clean end
    assert result.text == "I"  # committed at the first text: no failover, nothing repeated
    last = result.events[-1]
    assert last["object"] == "text_completion" and last["provider"] == "a"
    assert last["error"]["code"] in ("upstream_error", "upstream_timeout")
    assert last["choices"][0]["finish_reason"] == "error"
    assert not any(
        c.get("finish_reason") == "stop" for e in result.events for c in e.get("choices") or ()
    )
    assert upstreams["a"].requests == 1


# -- /tokenize, /detokenize --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"model": MODEL_ID, "prompt": "hola mundo", "return_token_strs": True},
        {"model": MODEL_ID, "messages": [{"role": "user", "content": "¿Qué tal?"}]},
        {"prompt": "sin modelo"},  # vLLM's default: a pure gateway's first model
    ],
    ids=["prompt", "messages", "no-model"],
)
def test_tokenize_reaches_the_upstream(client, direct, body):
    expected = direct.post("/tokenize", json=body)
    assert expected.status_code == 200, expected.text
    for path in ("/tokenize", "/v1/tokenize"):
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
        assert response.json() == expected.json()
        # a has no /tokenize: if the policy tried it first, its 404 moved on to the node.
        assert response.headers["x-pampero-provider"] == "node"


def test_detokenize_reaches_the_upstream(client, direct):
    tokens = direct.post("/tokenize", json={"model": MODEL_ID, "prompt": "hola"}).json()["tokens"]
    body = {"model": MODEL_ID, "tokens": tokens}
    response = client.post("/detokenize", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == direct.post("/detokenize", json=body).json() == {"prompt": "hola"}
    assert response.headers["x-pampero-provider"] == "node"


def test_tokens_of_a_model_no_provider_tokenizes(client):
    response = client.post("/tokenize", json={"model": "s", "prompt": "x"})
    assert response.status_code == 404, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    response = client.post("/tokenize", json={"model": "nope", "prompt": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


# -- the session header ------------------------------------------------------------------------


def answered_by(client: httpx.Client, headers: dict[str, str]) -> str:
    response = client.post(
        "/v1/chat/completions",
        json={"model": "s", "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["provider"])


def test_the_session_header_is_a_setting(client):
    chosen = {}
    for i in range(16):
        seen = {answered_by(client, {SESSION_HEADER: f"conversation-{i}"}) for _ in range(3)}
        assert len(seen) == 1  # one session, one provider
        chosen[i] = seen.pop()
    assert set(chosen.values()) == {"s1", "s2"}  # sessions spread over both
    # The default header means nothing here: the configured one alone decides.
    for i in range(6):
        headers = {SESSION_HEADER: "conversation-0", "x-session-id": f"other-{i}"}
        assert answered_by(client, headers) == chosen[0]


# -- /v1/responses through a router ------------------------------------------------------------


def responses_events(client: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", "/v1/responses", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        raw = b"".join(response.iter_raw())
    events = []
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        name, data = block.split(b"\n", 1)
        assert name.startswith(b"event: ") and data.startswith(b"data: "), block
        event = orjson.loads(data[6:])
        assert event["type"] == name[7:].decode()
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


@pytest.mark.parametrize("fault", ["cut", "inband-mid", "stall-mid"])
def test_responses_failing_after_commit_end_with_an_error_event(client, upstreams, fault):
    upstreams["r1"].reset(fault)
    events = responses_events(client, {"model": "r", "input": "hi"})
    types = [e["type"] for e in events]
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == ["I"]  # committed at the first delta: no failover, nothing repeated
    assert types[-2:] == ["error", "response.failed"]
    assert "response.completed" not in types and "response.incomplete" not in types
    assert events[-1]["response"]["status"] == "failed"
    assert "r1" in events[-2]["message"]
    assert (upstreams["r1"].requests, upstreams["r2"].requests) == (1, 0)


def test_a_whole_response_failing_after_commit_is_an_error(client, upstreams):
    upstreams["r1"].reset("cut")
    response = client.post("/v1/responses", json={"model": "r", "input": "hi"})
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    assert (upstreams["r1"].requests, upstreams["r2"].requests) == (1, 0)


@pytest.mark.parametrize("fault", ["status:500", "reset", "inband", "empty", "malformed"])
def test_responses_failing_before_the_first_delta_fail_over(gateway, client, upstreams, fault):
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)
    upstreams["r1"].reset(fault)
    with sdk.responses.stream(model="r", input="hi") as events:
        texts = [e.delta for e in events if e.type == "response.output_text.delta"]
        final = events.get_final_response()
    assert "".join(texts) == final.output_text == "I am r2."
    assert final.status == "completed"
    assert (upstreams["r1"].requests, upstreams["r2"].requests) == (1, 1)
    fresh_start(client, upstreams)  # r1's breaker may have opened: let it cool down
    upstreams["r1"].reset(fault)
    whole = sdk.responses.create(model="r", input="hi")
    assert whole.output_text == "I am r2." and whole.status == "completed"
    assert (upstreams["r1"].requests, upstreams["r2"].requests) == (1, 1)
