"""The gateway against upstreams that fail: for each fault, what the client sees, how many
requests each upstream received, and how long it took.

Three fault upstreams on loopback (``tests/upstreams/fault.py``) serve the model ``m``; a pure
gateway (no local model) fronts them with one-second connect, first-token and stall timeouts.
Requests name ``provider.order`` so the first provider tried is known. Time bounds are loose
(a loaded two-core machine) but each proves that no attempt waited on more than its timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.e2e.harness import Launcher, Server, free_port
from tests.upstreams.client import post, settle, stream
from tests.upstreams.fault import FaultUpstream
from tests.upstreams.gateway import (
    client_of,
    fault_upstreams,
    fresh_start,
    gateway_client,
    launched_gateway,
    upstream_entry,
)

pytestmark = pytest.mark.e2e

TIMEOUT = 1.0  # the gateway's connect, first-token and stall timeouts in this module
FAST = 1.5  # a failover that waits on no timeout ends well within this (loaded machine)
MESSAGES = [{"role": "user", "content": "who are you?"}]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, FaultUpstream]]:
    # d is only for the 401 test: it stays in its authentication cooldown for minutes.
    with fault_upstreams({name: ("m",) for name in ("a", "b", "c", "d")}) as started:
        yield started


@pytest.fixture(scope="module")
def gateway(launch: Launcher, upstreams, tmp_path_factory) -> Iterator[Server]:
    timeouts = {
        "connect_timeout": TIMEOUT,
        "first_token_timeout": TIMEOUT,
        "stall_timeout": TIMEOUT,
    }
    contexts = {"a": 4096, "b": 8192, "c": 4096, "d": 4096}
    config = {
        "upstream_cooldown": 0.3,
        "upstream_max_cooldown": 3,
        "upstreams": [
            upstream_entry(u, models=[{"id": "m", "context_length": contexts[n]}], **timeouts)
            for n, u in upstreams.items()
        ],
    }
    with launched_gateway(launch, tmp_path_factory, config) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway: Server) -> Iterator[httpx.Client]:
    with client_of(gateway) as http:
        yield http


@pytest.fixture(autouse=True)
def fresh(client, upstreams):
    fresh_start(client, upstreams, ignore={"d"})


def body(order=("a", "b"), only=None, **fields):
    provider = {"order": list(order)}
    if only is not None:
        provider["only"] = list(only)
    return {"model": "m", "messages": MESSAGES, "provider": provider, **fields}


def counts(upstreams):
    return {name: u.requests for name, u in upstreams.items() if name != "d"}


def test_gateway_is_pure_and_lists_providers(client):
    models = client.get("/v1/models").json()["data"]
    assert [(m["id"], sorted(m["providers"])) for m in models] == [("m", ["a", "b", "c", "d"])]
    assert client.get("/health").json() == {"status": "ok"}
    providers = {p["id"]: p for p in client.get("/v1/providers").json()["data"]}
    assert set(providers) == {"a", "b", "c", "d"}  # no local model: no local provider
    assert all("url" not in p and "key" not in str(p) for p in providers.values())


def test_429_with_retry_after_fails_over_and_cools_down(client, upstreams):
    upstreams["a"].reset("status:429:2")
    response, seconds = post(client, body())
    assert response.status_code == 200
    assert response.json()["provider"] == "b"
    assert response.headers["x-pampero-provider"] == "b"
    assert response.headers["x-pampero-attempts"] == "2"
    assert counts(upstreams) == {"a": 1, "b": 1, "c": 0}
    assert seconds < FAST  # no backoff slept on while b was untried
    # a cools down for its Retry-After: the next request does not even try it.
    (a,) = [p for p in client.get("/v1/providers").json()["data"] if p["id"] == "a"]
    assert a["state"] == "open" and 1.0 < a["cooldown_remaining_s"] <= 2.0
    response, seconds = post(client, body())
    assert response.json()["provider"] == "b" and response.headers["x-pampero-attempts"] == "1"
    assert counts(upstreams) == {"a": 1, "b": 2, "c": 0}


def test_all_rate_limited_is_429_with_the_earliest_retry_after(client, upstreams):
    upstreams["a"].reset("status:429:3")
    upstreams["b"].reset("status:429:2")
    response, seconds = post(client, body(only=("a", "b")))
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert "a: HTTP 429" in error["message"] and "b: HTTP 429" in error["message"]
    assert counts(upstreams) == {"a": 1, "b": 1, "c": 0}
    assert seconds < FAST


def test_500_fails_over(client, upstreams):
    upstreams["a"].reset("status:500")
    response, seconds = post(client, body())
    assert response.status_code == 200 and response.json()["provider"] == "b"
    assert counts(upstreams) == {"a": 1, "b": 1, "c": 0}
    assert seconds < FAST


def test_401_cools_the_provider_down_for_minutes_and_hides_the_key(client, upstreams):
    upstreams["d"].reset("status:401")
    response, seconds = post(client, body(order=("d", "b")))
    assert response.status_code == 200 and response.json()["provider"] == "b"
    assert counts(upstreams) == {"a": 0, "b": 1, "c": 0}
    assert upstreams["d"].requests == 1
    (d,) = [p for p in client.get("/v1/providers").json()["data"] if p["id"] == "d"]
    assert d["state"] == "open" and d["cooldown_remaining_s"] > 60
    assert seconds < FAST
    # Only d allowed: the client learns that d is unavailable, and when it may be back.
    response, _ = post(client, body(order=("d",), only=("d",)))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 60
    assert "d: cooling down" in response.json()["error"]["message"]
    assert upstreams["d"].url.split("//")[1] not in response.text
    assert upstreams["d"].requests == 1


def test_connection_reset_fails_over(client, upstreams):
    upstreams["a"].reset("reset")
    response, seconds = post(client, body())
    assert response.status_code == 200 and response.json()["provider"] == "b"
    assert counts(upstreams) == {"a": 1, "b": 1, "c": 0}
    assert seconds < FAST


def test_connection_refused_fails_over(launch, tmp_path_factory, upstreams):
    # An upstream whose port nobody listens on (it went away after the gateway started).
    gone = FaultUpstream("gone", ("m",))
    config = {
        "upstreams": [
            {"name": "gone", "url": gone.url, "connect_timeout": TIMEOUT},
            {"name": "b", "url": upstreams["b"].url},
        ]
    }
    with gateway_client(launch, tmp_path_factory, config) as http:
        gone.stop()
        response, seconds = post(http, body(order=("gone", "b")))
    assert response.status_code == 200 and response.json()["provider"] == "b"
    assert "gone: connection failed" not in response.text
    assert seconds < FAST


def test_an_upstream_down_at_start_joins_when_it_comes_up(launch, tmp_path_factory, upstreams):
    port = free_port()
    config = {
        "upstreams": [
            {"name": "late", "url": f"http://127.0.0.1:{port}"},
            {"name": "b", "url": upstreams["b"].url},
        ]
    }
    with gateway_client(launch, tmp_path_factory, config) as http:
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["m"]
        late = FaultUpstream("late", ("m", "late-model"), port=port)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
                if "late-model" in models:
                    break
                time.sleep(0.2)
            assert models["m"]["providers"] == ["b", "late"]
            response, _ = post(http, {"model": "late-model", "messages": MESSAGES})
            assert response.status_code == 200 and response.json()["provider"] == "late"
        finally:
            late.stop()


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_stall_before_the_first_byte_fails_over_after_the_first_token_timeout(
    client, upstreams, streamed
):
    upstreams["a"].reset("stall")
    if streamed:
        result = stream(client, body())
        assert result.status == 200 and result.done
        assert result.providers == {"b"} and result.text == "I am b."
        seconds = result.seconds
    else:
        response, seconds = post(client, body())
        assert response.status_code == 200 and response.json()["provider"] == "b"
    assert counts(upstreams) == {"a": 1, "b": 1, "c": 0}
    assert TIMEOUT * 0.9 <= seconds < TIMEOUT + FAST
    settle(client, ignore={"d"})
    assert upstreams["a"].disconnects == 1  # the stalled request was cancelled upstream


def test_stall_mid_stream_ends_with_an_in_band_error(client, upstreams):
    upstreams["a"].reset("stall-mid")
    result = stream(client, body())
    assert result.status == 200 and result.done
    assert result.text == "I"  # what a said before it stalled, once
    last = result.events[-1]
    assert last["error"]["code"] == "upstream_timeout"
    assert last["choices"][0]["finish_reason"] == "error"
    assert not any(c.get("finish_reason") == "stop" for e in result.events for c in e["choices"])
    assert counts(upstreams) == {"a": 1, "b": 0, "c": 0}  # committed: no failover
    assert TIMEOUT * 0.9 <= result.seconds < TIMEOUT + FAST
    settle(client, ignore={"d"})
    assert upstreams["a"].disconnects == 1


def test_cut_after_the_first_content_chunk_ends_with_an_in_band_error(client, upstreams):
    upstreams["a"].reset("cut")
    result = stream(client, body())
    assert result.status == 200 and result.done
    assert result.text == "I"
    assert result.events[-1]["error"]["code"] == "upstream_error"
    assert result.events[-1]["choices"][0]["finish_reason"] == "error"
    assert counts(upstreams) == {"a": 1, "b": 0, "c": 0}
    assert result.seconds < FAST


def test_the_openai_sdk_raises_on_an_in_band_error(gateway, upstreams):
    upstreams["a"].reset("inband-mid")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)
    seen = []
    with pytest.raises(openai.APIError, match="failed mid-stream"):
        for chunk in client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, extra_body={"provider": {"order": ["a"]}}
        ):
            seen.append(chunk.choices[0].delta.content)
    assert "I" in seen
    assert counts(upstreams) == {"a": 1, "b": 0, "c": 0}


@pytest.mark.parametrize("fault", ["malformed", "inband", "empty"])
def test_a_bad_start_of_stream_fails_over_invisibly(client, upstreams, fault):
    upstreams["a"].reset(fault)
    result = stream(client, body())
    assert result.status == 200 and result.done
    assert result.providers == {"b"} and result.text == "I am b."
    assert result.events[0]["choices"][0]["delta"]["role"] == "assistant"  # one role chunk
    assert sum("role" in e["choices"][0]["delta"] for e in result.events if e["choices"]) == 1
    assert result.headers["x-pampero-attempts"] == "2"
    assert counts(upstreams) == {"a": 1, "b": 1, "c": 0}
    assert result.seconds < FAST


def test_a_malformed_whole_answer_fails_over(client, upstreams):
    upstreams["a"].reset("malformed")
    response, seconds = post(client, body())
    assert response.status_code == 200 and response.json()["provider"] == "b"
    assert counts(upstreams) == {"a": 1, "b": 1, "c": 0}
    assert seconds < FAST


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_client_errors_are_relayed_without_retry(client, upstreams, status):
    upstreams["a"].reset(f"status:{status}")
    response, seconds = post(client, body())
    assert response.status_code == status
    assert response.json()["error"]["message"] == f"a says {status}"
    assert counts(upstreams) == {"a": 1, "b": 0, "c": 0}
    assert seconds < FAST


def test_context_length_goes_only_to_a_larger_context(client, upstreams):
    upstreams["a"].reset("ctx")
    upstreams["c"].reset("ctx")
    # c (4096) is not tried after a (4096) said the prompt is too long; b (8192) is.
    response, _ = post(client, body(order=("a", "c", "b")))
    assert response.status_code == 200 and response.json()["provider"] == "b"
    assert counts(upstreams) == {"a": 1, "b": 1, "c": 0}
    upstreams["b"].reset("ctx")
    response, _ = post(client, body(order=("b", "a")))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert counts(upstreams) == {"a": 1, "b": 1, "c": 0}  # a (smaller) was not tried again


def test_everything_failing_is_503_listing_why(client, upstreams):
    for name, fault in (("a", "status:500"), ("b", "reset"), ("c", "status:503")):
        upstreams[name].reset(fault)
    response, seconds = post(client, body(order=("a", "b", "c")))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    message = response.json()["error"]["message"]
    for expected in ("a: HTTP 500", "b: connection", "c: HTTP 503"):
        assert expected in message
    assert counts(upstreams) == {"a": 1, "b": 1, "c": 1}
    assert seconds < FAST


def test_repeated_failures_open_the_breaker_then_a_probe_closes_it(client, upstreams):
    assert post(client, body(order=("a",), only=("a",)))[0].status_code == 200  # a is closed
    upstreams["a"].reset(default="status:500")
    # Three failures in a row at most (fewer when a's failure rate over the last minute, from
    # the tests before, is already past half) open the breaker; from then on a is skipped.
    statuses = [post(client, body(order=("a",), only=("a",)))[0] for _ in range(4)]
    reached = upstreams["a"].requests
    assert 1 <= reached <= 3
    assert "cooling down" in statuses[-1].text and statuses[-1].status_code == 503
    assert post(client, body(order=("a",), only=("a",)))[0].status_code == 503
    assert upstreams["a"].requests == reached  # skipped while open
    metrics = client.get("/metrics").text
    assert 'pampero_gateway_provider_state{provider="a",state="open"} 1.0' in metrics
    upstreams["a"].reset()
    settle(client, ignore={"d"})
    response, _ = post(client, body(order=("a",), only=("a",)))
    assert response.status_code == 200 and upstreams["a"].requests == 1  # the probe
    (a,) = [p for p in client.get("/v1/providers").json()["data"] if p["id"] == "a"]
    assert a["state"] == "closed"


def test_a_client_leaving_mid_stream_cancels_the_upstream_request(client, upstreams):
    upstreams["a"].reset("stall-mid")
    with client.stream("POST", "/v1/chat/completions", json=body(stream=True)) as response:
        lines = response.iter_lines()
        while "I" not in next(lines):
            pass
    # The gateway noticed the client leaving and closed its upstream connection at once.
    deadline = time.monotonic() + TIMEOUT * 0.8
    while upstreams["a"].disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstreams["a"].disconnects == 1
    assert counts(upstreams) == {"a": 1, "b": 0, "c": 0}
