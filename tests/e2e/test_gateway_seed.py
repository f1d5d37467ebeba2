"""Done means: the OfoxAI seed's requests (chat, stream, vision, tools, ``response_format``,
``provider``), run as users run them, against a pampero gateway fronting two pampero nodes.

Two real ``pampero serve`` nodes on loopback (one decode thread each) serve the default model
aliased ``openai/gpt-4o`` and require a key, which the gateway reads from ``NODE_KEY``. Node B
also serves the tiny vision-language model; the gateway knows it as a third provider of
``openai/gpt-4o``, ``b-vision``, declared with vision and weight 0 (a standby: text goes to
a and b, and an image only to the provider that can see it). The gateway itself serves no
local model and requires the seed's ``$OFOX_API_KEY``.

The seed's snippets run verbatim (``seed_snippets.py``; the host, key and, for the vision
request, the image URL swapped at run time). The seed documents ``tools``, ``tool_choice``,
``response_format`` and ``provider`` in its parameter table without an example; those requests
are written here in the seed's own curl style.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    GATEWAY_CHAT_EXTRAS,
    MODEL_ID,
    Launcher,
    Server,
    run_snippets,
)
from tests.e2e.seed_snippets import SEED_002_CURL, SEED_002_SDK_STREAM
from tests.image_server import png, start, stop
from tests.spec.validate import validate_against
from tests.upstreams.client import write_config

pytestmark = pytest.mark.e2e

SEED_HOST = "https://api.ofox.ai"
SEED_IMAGE = "https://example.com/image.jpg"
# Bounds the seed's requests that set no max_tokens (they run until the model stops, which at
# temperature 0.7 can take the whole context) without touching their text.
SEED_CONTEXT = 512

# The seed's vision example shows the call only; the client set-up and a print are added, as
# for its streaming example.
SEED_002_VISION = r"""import os

from openai import OpenAI

client = OpenAI(base_url="https://api.ofox.ai/v1", api_key=os.environ["OFOX_API_KEY"])

response = client.chat.completions.create(
model="openai/gpt-4o",
messages=[{
"role": "user",
"content": [
{"type": "text", "text": "¿Qué hay en esta imagen?"},
{"type": "image_url", "image_url": {"url": "https://example.com/image.jpg"}}
]
}]
)
print(response.model_dump_json())
"""

# The parameters the seed's table documents, in its curl style.
SEED_002_TOOLS = r"""curl https://api.ofox.ai/v1/chat/completions \
-H "Authorization: Bearer $OFOX_API_KEY" \
-H "Content-Type: application/json" \
-d '{
"model": "openai/gpt-4o",
"messages": [
{"role": "user", "content": "¿Qué tiempo hace en Buenos Aires?"}
],
"tools": [{"type": "function", "function": {
  "name": "obtener_clima", "description": "Clima actual de una ciudad",
  "parameters": {"type": "object", "properties": {"ciudad": {"type": "string"}},
                 "required": ["ciudad"]}}}],
"tool_choice": {"type": "function", "function": {"name": "obtener_clima"}},
"max_tokens": 60
}'
"""

SEED_002_JSON = r"""curl https://api.ofox.ai/v1/chat/completions \
-H "Authorization: Bearer $OFOX_API_KEY" \
-H "Content-Type: application/json" \
-d '{
"model": "openai/gpt-4o",
"messages": [
{"role": "system", "content": "Responde en JSON."},
{"role": "user", "content": "Dame el nombre y la capital de Argentina."}
],
"response_format": {"type": "json_object"},
"max_tokens": 80
}'
"""

SEED_002_PROVIDER = r"""curl https://api.ofox.ai/v1/chat/completions \
-H "Authorization: Bearer $OFOX_API_KEY" \
-H "Content-Type: application/json" \
-d '{
"model": "openai/gpt-4o",
"messages": [
{"role": "user", "content": "Explica qué es un API Gateway"}
],
"temperature": 0.7,
"max_tokens": 40,
"provider": {"order": ["b", "a"], "allow_fallbacks": true}
}'
"""

SNIPPETS = {
    "chat": ("curl", SEED_002_CURL),
    "stream": ("python", SEED_002_SDK_STREAM),
    "vision": ("python", SEED_002_VISION),
    "tools": ("curl", SEED_002_TOOLS),
    "json": ("curl", SEED_002_JSON),
    "provider": ("curl", SEED_002_PROVIDER),
}


@pytest.fixture(scope="module")
def tiny_vlm_files():
    pytest.importorskip("torch", reason="the tiny vision model is built with torch")
    pytest.importorskip("transformers", reason="the tiny vision model is built with transformers")
    from pampero.dev.tiny_vlm import cached_tiny_vlm
    from pampero.settings import default_home

    home = os.environ.get("PAMPERO_HOME")
    return cached_tiny_vlm(Path(home) if home else default_home())


@pytest.fixture(scope="module")
def image_host():
    host = start("127.0.0.1")
    yield host
    stop(host)


@pytest.fixture(scope="module")
def gateway(
    launch: Launcher, tmp_path_factory, tiny_vlm_files, image_host
) -> Iterator[tuple[Server, str]]:
    where = tmp_path_factory.mktemp("seed-gateway")
    node_key, key = "sk-node-" + secrets.token_hex(6), "sk-ofox-" + secrets.token_hex(6)
    text_model = {"id": MODEL_ID, "path": "default", "aliases": ["openai/gpt-4o"]}
    common = {"threads": 1, "n_ctx": SEED_CONTEXT, "api_keys": [node_key]}
    node_a = write_config(where / "a.yaml", {**common, "models": [text_model]})
    vision_model = {
        "id": "tiny-vlm",
        "path": str(tiny_vlm_files.model_gguf),
        "mmproj": str(tiny_vlm_files.mmproj_gguf),
        "n_ctx": 512,
    }
    node_b = write_config(
        where / "b.yaml",
        {**common, "models": [text_model, vision_model], "media_allow": ["127.0.0.1"]},
    )
    with launch("--config", str(node_a)) as a, launch("--config", str(node_b)) as b:
        upstreams = [
            {"name": "a", "url": a.url, "key_env": "NODE_KEY"},
            {"name": "b", "url": b.url, "key_env": "NODE_KEY"},
            {
                "name": "b-vision",
                "url": b.url,
                "key_env": "NODE_KEY",
                "discover": False,
                "weight": 0,
                "models": [
                    {
                        "id": "openai/gpt-4o",
                        "upstream_id": "tiny-vlm",
                        "capabilities": {"vision": True},
                    }
                ],
            },
        ]
        config = write_config(where / "gateway.yaml", {"api_keys": [key], "upstreams": upstreams})
        with launch("--config", str(config), env={"NODE_KEY": node_key}) as gateway:
            yield gateway, key


@pytest.fixture(scope="module")
def runs(gateway, image_host):
    server, key = gateway
    picture = image_host.put("seed.png", png(64, 48), "image/png")
    replacements = {SEED_HOST: server.url, SEED_IMAGE: picture}
    return run_snippets(SNIPPETS, replacements, {**os.environ, "OFOX_API_KEY": key})


def ran(runs, name):
    result = runs[name]
    if result is None:
        pytest.skip(f"{SNIPPETS[name][0]} is not installed")
    return result.ok()


def check_answer(body, providers=("a", "b")):
    validate_against("CreateChatCompletionResponse", body, allow_extra=GATEWAY_CHAT_EXTRAS)
    assert body["model"] == "openai/gpt-4o"
    assert body["provider"] in providers
    (choice,) = body["choices"]
    assert choice["finish_reason"] in ("stop", "length", "tool_calls")
    return choice


def test_chat(runs):
    choice = check_answer(json.loads(ran(runs, "chat")))
    assert choice["message"]["content"].strip()


def test_stream(runs):
    assert ran(runs, "stream").strip()


def test_vision_goes_to_the_provider_that_sees(runs):
    body = json.loads(ran(runs, "vision"))
    assert body["provider"] == "b-vision" and body["model"] == "openai/gpt-4o"
    assert body["usage"]["prompt_tokens"] > 0


def test_tools(runs):
    choice = check_answer(json.loads(ran(runs, "tools")))
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "obtener_clima"


def test_response_format(runs):
    choice = check_answer(json.loads(ran(runs, "json")))
    if choice["finish_reason"] == "stop":
        assert isinstance(json.loads(choice["message"]["content"]), dict)


def test_provider(runs):
    check_answer(json.loads(ran(runs, "provider")), providers=("b",))


def test_both_nodes_are_providers_and_no_secret_shows(gateway, runs):
    server, key = gateway
    api = server.api(key=key)
    try:
        providers = {p["id"]: p for p in api.http.get("/v1/providers").json()["data"]}
        models = {m["id"]: m for m in api.http.get("/v1/models").json()["data"]}
    finally:
        api.close()
    assert models["openai/gpt-4o"]["providers"] == ["a", "b", "b-vision"]
    assert models["openai/gpt-4o"]["capabilities"]["vision"] is True
    assert providers["b-vision"]["successes"] >= 1
    assert providers["a"]["successes"] + providers["b"]["successes"] >= 5
    assert "sk-node" not in json.dumps(providers) + json.dumps(models)
