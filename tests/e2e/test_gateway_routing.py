"""Every field of the ``provider`` object, the ``models`` array and the ``:nitro``/``:floor``
suffixes, each shown by which provider answered.

A gateway serves the default model locally (provider ``local``, alias ``m``) beside three
fault upstreams that answer instantly as themselves (``tests/upstreams/fault.py``):

    provider  price (prompt/completion)  quantization  data_collection  params     models
    local     10 / 10                    -             deny             all known  m
    a          5 / 5                     fp8           allow            unknown    m
    b          1 / 1                     int4          deny             unknown    m, m2
    c          3 / 3                     -             allow            2 listed   m, m3
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.harness import MODEL_ID, Launcher, Server
from tests.upstreams.client import post, stream
from tests.upstreams.fault import FaultUpstream
from tests.upstreams.gateway import client_of, fault_upstreams, fresh_start, launched_gateway

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "Say hi."}]
UPSTREAM_MODELS = {"a": ("m",), "b": ("m", "m2"), "c": ("m", "m3")}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, FaultUpstream]]:
    with fault_upstreams(UPSTREAM_MODELS) as started:
        yield started


@pytest.fixture(scope="module")
def gateway(launch: Launcher, upstreams, tmp_path_factory) -> Iterator[Server]:
    config = {
        "threads": 1,
        "n_ctx": 512,
        "upstream_cooldown": 0.2,
        "models": [
            {
                "id": MODEL_ID,
                "path": "default",
                "aliases": ["m"],
                "price": {"prompt": 10, "completion": 10},
            }
        ],
        "upstreams": [
            {
                "name": "a",
                "url": upstreams["a"].url,
                "quantization": "fp8",
                "models": [{"id": "m", "price": {"prompt": 5, "completion": 5}}],
            },
            {
                "name": "b",
                "url": upstreams["b"].url,
                "data_collection": "deny",
                "models": [
                    {"id": "m", "quantization": "int4", "price": {"prompt": 1, "completion": 1}}
                ],
            },
            {
                "name": "c",
                "url": upstreams["c"].url,
                "models": [
                    {
                        "id": "m",
                        "price": {"prompt": 3, "completion": 3},
                        "supported_params": ["temperature", "max_tokens"],
                    }
                ],
            },
        ],
    }
    with launched_gateway(launch, tmp_path_factory, config) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway: Server) -> Iterator[httpx.Client]:
    with client_of(gateway, timeout=120) as http:
        yield http


@pytest.fixture(autouse=True)
def fresh(client, upstreams):
    fresh_start(client, upstreams)


def ask(client, provider=None, model="m", **fields):
    body = {"model": model, "messages": MESSAGES, "max_tokens": 4, **fields}
    if provider is not None:
        body["provider"] = provider
    response, _ = post(client, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["provider"] == response.headers["x-pampero-provider"]
    return answer


def answered(client, times=6, **kwargs) -> Counter[str]:
    return Counter(ask(client, **kwargs)["provider"] for _ in range(times))


def providers_view(client) -> dict[str, dict]:
    return {p["id"]: p for p in client.get("/v1/providers").json()["data"]}


def test_models_list_each_model_once_with_its_providers(client):
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert models["m"]["providers"] == ["local", "a", "b", "c"]
    assert models["m2"]["providers"] == ["b"] and models["m3"]["providers"] == ["c"]
    assert models[MODEL_ID]["providers"] == ["local", "a", "b", "c"]  # m is its alias


def test_without_preferences_the_load_is_spread(client):
    seen = answered(client, times=12, provider={"ignore": ["local"]})
    assert len(seen) >= 2, seen  # power of two choices over a, b, c


def test_the_local_provider_answers_as_itself(client):
    answer = ask(client, provider={"only": ["local"]})
    assert answer["provider"] == "local" and answer["model"] == MODEL_ID
    assert answer["usage"]["cost"] > 0  # priced: 10 USD per million tokens


def test_order(client, upstreams):
    assert ask(client, provider={"order": ["c", "a"]})["provider"] == "c"
    assert ask(client, provider={"order": ["b"]})["provider"] == "b"
    upstreams["c"].reset("status:500")
    response, _ = post(
        client, {"model": "m", "messages": MESSAGES, "provider": {"order": ["c", "a"]}}
    )
    assert response.json()["provider"] == "a" and response.headers["x-pampero-attempts"] == "2"


def test_only(client):
    assert answered(client, provider={"only": ["b"]}) == {"b": 6}


def test_ignore(client):
    assert answered(client, provider={"ignore": ["a", "b", "local"]}) == {"c": 6}


def test_allow_fallbacks(client, upstreams):
    upstreams["a"].reset("status:500", "status:500")
    body = {
        "model": "m",
        "messages": MESSAGES,
        "provider": {"order": ["a"], "allow_fallbacks": False},
    }
    response, _ = post(client, body)
    assert response.status_code == 503 and "a: HTTP 500" in response.text
    assert [u.requests for u in upstreams.values()] == [1, 0, 0]
    body["provider"]["allow_fallbacks"] = True
    response, _ = post(client, body)
    assert response.status_code == 200 and response.json()["provider"] != "a"


def test_require_parameters(client, upstreams):
    fields = {"temperature": 0.5, "top_k": 5}
    # c lists what it honours and top_k is not among it: skipped, never sent a dropped field.
    assert answered(client, times=4, provider={"only": ["a", "c"]}, **fields) == {"a": 4}
    assert upstreams["c"].requests == 0
    # require_parameters also skips providers whose support is unknown (a); local knows.
    strict = {"only": ["a", "c", "local"], "require_parameters": True}
    assert ask(client, provider=strict, **fields)["provider"] == "local"
    assert upstreams["a"].requests == 4
    # Nobody can honour top_k: a 400 naming it, whatever require_parameters says.
    response, _ = post(
        client, {"model": "m", "messages": MESSAGES, "provider": {"only": ["c"]}, **fields}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "top_k"
    assert upstreams["c"].requests == 0


def test_data_collection(client):
    seen = answered(client, provider={"data_collection": "deny", "ignore": ["local"]})
    assert seen == {"b": 6}
    seen = answered(client, times=4, provider={"data_collection": "deny", "only": ["local", "a"]})
    assert seen == {"local": 4}


def test_quantizations(client):
    assert answered(client, provider={"quantizations": ["int4"]}) == {"b": 6}
    assert answered(client, provider={"quantizations": ["fp8", "bf16"]}) == {"a": 6}


def test_sort_price_and_floor(client, upstreams):
    assert answered(client, provider={"sort": "price"}) == {"b": 6}
    assert answered(client, model="m:floor") == {"b": 6}
    upstreams["b"].reset("status:500")  # the cheapest fails: the next cheapest, c
    answer = ask(client, provider={"sort": "price"})
    assert answer["provider"] == "c"


def test_sort_latency(client, upstreams):
    # Latencies far apart, so that no jitter of a loaded machine reorders them between requests.
    upstreams["a"].reset(default="slow:0.4")
    upstreams["c"].reset(default="slow:0.15")
    for name in ("a", "b", "c"):
        ask(client, provider={"only": [name]})
    view = providers_view(client)
    assert view["a"]["latency_ms"] > view["c"]["latency_ms"] > view["b"]["latency_ms"], view
    seen = answered(client, provider={"sort": "latency", "ignore": ["local"]})
    assert seen == {"b": 6}


def test_sort_throughput_and_nitro(client, upstreams):
    upstreams["c"].reset(default="slow:0.3")
    for name in ("a", "b", "c"):
        result = stream(client, {"model": "m", "messages": MESSAGES, "provider": {"only": [name]}})
        assert result.providers == {name}
    view = providers_view(client)
    best = max("abc", key=lambda n: view[n]["throughput_tps"])
    assert best != "c"
    seen = answered(client, provider={"sort": "throughput", "ignore": ["local"]})
    assert seen == {best: 6}
    result = stream(
        client, {"model": "m:nitro", "messages": MESSAGES, "provider": {"ignore": ["local"]}}
    )
    assert result.providers == {best}


def test_max_price(client):
    assert answered(client, provider={"max_price": {"prompt": 2}}) == {"b": 6}
    seen = answered(client, provider={"max_price": {"completion": 4}, "ignore": ["local"]})
    assert set(seen) <= {"b", "c"}
    response, _ = post(
        client, {"model": "m", "messages": MESSAGES, "provider": {"max_price": {"prompt": 0.5}}}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_endpoints"
    assert "over provider.max_price" in response.json()["error"]["message"]


def test_preferred_max_latency(client, upstreams):
    upstreams["a"].reset("slow:0.3")
    ask(client, provider={"only": ["a"]})
    ask(client, provider={"only": ["b"]})
    seen = answered(client, provider={"only": ["a", "b"], "preferred_max_latency": 0.2})
    assert seen == {"b": 6}


def test_preferred_min_throughput(client, upstreams):
    upstreams["c"].reset("slow:0.3")
    for name in ("b", "c"):
        stream(client, {"model": "m", "messages": MESSAGES, "provider": {"only": [name]}})
    view = providers_view(client)
    floor = (view["b"]["throughput_tps"] + view["c"]["throughput_tps"]) / 2
    assert view["c"]["throughput_tps"] < floor < view["b"]["throughput_tps"]
    seen = answered(client, provider={"only": ["b", "c"], "preferred_min_throughput": floor})
    assert seen == {"b": 6}


def test_models_fallback_answers_as_the_fallback_model(client, upstreams):
    upstreams["c"].reset("status:503")
    response, _ = post(client, {"model": "m3", "models": ["m2"], "messages": MESSAGES})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["provider"] == "b" and answer["model"] == "m2"
    assert response.headers["x-pampero-attempts"] == "2"
    assert [u.requests for u in upstreams.values()] == [0, 1, 1]
    assert upstreams["b"].bodies[0]["model"] == "m2" and "models" not in upstreams["b"].bodies[0]


def test_routing_fields_never_reach_an_upstream(client, upstreams):
    ask(client, provider={"only": ["a"]}, models=["m2"])
    (sent,) = upstreams["a"].bodies
    assert "provider" not in sent and "models" not in sent and sent["max_tokens"] == 4


@pytest.mark.parametrize(
    ("provider", "param"),
    [
        ({"only": ["nowhere"]}, "provider.only[0]"),
        ({"order": ["a", "x"]}, "provider.order[1]"),
        ({"sort": "speed"}, "provider.sort"),
        ({"allow_fallback": True}, "provider.allow_fallback"),
        ({"max_price": {"prompt": "1"}}, "provider.max_price.prompt"),
    ],
)
def test_bad_preferences_are_400_naming_the_field(client, provider, param):
    response, _ = post(client, {"model": "m", "messages": MESSAGES, "provider": provider})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("field", ["api_base", "base_url", "api_key", "extra_headers"])
def test_the_client_never_chooses_the_upstream(client, upstreams, field):
    response, _ = post(client, {"model": "m", "messages": MESSAGES, field: "http://evil"})
    assert response.status_code == 400 and response.json()["error"]["param"] == field
    assert sum(u.requests for u in upstreams.values()) == 0


def test_local_only_server_honours_provider_local(api):
    body = {"model": MODEL_ID, "messages": MESSAGES, "max_tokens": 2}
    response = api.post("/v1/chat/completions", {**body, "provider": {"only": ["local"]}})
    assert response.status_code == 200, response.text
    assert response.json()["provider"] == "local"
    assert response.headers["x-pampero-provider"] == "local"
    response = api.post("/v1/chat/completions", {**body, "provider": {"order": ["openai"]}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "provider.order[0]"
    assert "openai" in response.json()["error"]["message"]
    plain = api.post("/v1/chat/completions", body)  # without provider: untouched
    assert "provider" not in plain.json() and "x-pampero-provider" not in plain.headers
