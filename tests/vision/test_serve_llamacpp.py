"""Images through the llama.cpp engine, served for real: the tiny Qwen2-VL as GGUF + mmproj.

The shared suite is ``serve_contract.py``; here also the text-only default model, which must
refuse images before fetching them (it runs on the e2e suite's session server).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pampero.dev.tiny_vlm import TinyVLM
from tests.e2e.harness import MODEL_ID, Launcher, Server
from tests.image_server import Server as ImageServer
from tests.vision.pictures import WHITE
from tests.vision.serve_contract import MODEL, ServeContract, Vision, image, serving, text, user


@pytest.fixture(scope="module")
def vlm(
    launch: Launcher, tiny_vlm: TinyVLM, image_host: ImageServer, canary: ImageServer
) -> Iterator[Vision]:
    model = (
        "--model", f"{MODEL}={tiny_vlm.model_gguf}", "--mmproj", str(tiny_vlm.mmproj_gguf),
    )  # fmt: skip
    with serving(launch, model, image_host, canary) as vision:
        yield vision


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_text_only_model_refuses_an_image_without_fetching_it(
    server: Server, image_host: ImageServer, stream: bool
) -> None:
    name = f"for-the-text-model-{'stream' if stream else 'whole'}.png"
    url = image_host.put(name, WHITE.data)
    api = server.api()
    try:
        for part in (image(url), {"type": "input_image", "image_url": WHITE.data_uri}):
            body = api.chat_body(None, {"messages": [user(text("What is this?"), part)]})
            error = api.error("/v1/chat/completions", {**body, "stream": stream}, 400)
            assert error["message"] == f"Model {MODEL_ID} does not accept image input."
            assert (error["type"], error["param"]) == (
                "invalid_request_error",
                "messages[0].content[1]",
            )
        card = api.http.get(f"/v1/models/{MODEL_ID}").json()
    finally:
        api.close()
    assert f"/files/{name}" not in image_host.paths
    assert card["capabilities"]["vision"] is False


class TestLlamaCppServesImages(ServeContract):
    """The contract, on the llama.cpp engine."""
