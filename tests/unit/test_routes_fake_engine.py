"""Routes, backends, serving and SSE in process, over the fake engine (``tests.fake_engine``).

The app is pampero's own (``create_app``), its model served by the real ``BatchedEngine`` and
scheduler over ``FakeRunner``; only the model is fake. Each test takes milliseconds, so the
edge's behaviour (status, error shape, SSE framing, usage) is checked on every change; the
end-to-end suites check the same against the real model.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from pampero.api.app import create_app
from pampero.settings import ModelConfig, Settings
from tests.e2e import sse
from tests.e2e.harness import check_chat, check_completion, check_error
from tests.fakes import ByteTokenizer

MODEL = "fake"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        models=[ModelConfig(id=MODEL, aliases=["fake-alias"], engine="tests.fake_engine:create")],
        home=tmp_path_factory.mktemp("home"),
        n_ctx=256,
        max_seqs=4,
        n_batch=64,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def chat(**fields: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "temperature": 0,
        **fields,
    }


def stream(client: TestClient, path: str, body: dict[str, Any]) -> bytes:
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        return b"".join(response.iter_raw())


def test_a_chat_completion_counts_every_byte_token(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 200, response.text
    body = response.json()
    check_chat(body)
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert body["usage"]["prompt_tokens"] == len(ByteTokenizer().encode(prompt)) == 21
    assert body["usage"]["completion_tokens"] == 5
    content = body["choices"][0]["message"]["content"]
    assert len(content) == 5 and content.isalpha() and content.islower()
    assert body["choices"][0]["finish_reason"] == "length"


def test_a_stream_is_framed_as_openai_frames_it(client: TestClient) -> None:
    raw = stream(
        client, "/v1/chat/completions", chat(stream=True, stream_options={"include_usage": True})
    )
    events = sse.parse_events(raw)
    result = sse.chat_stream(events, n=1, include_usage=True)
    assert len(result.choices[0].text) == 5
    assert result.usage is not None and result.usage["completion_tokens"] == 5
    assert raw.startswith(b'data: {"id":"chatcmpl-')
    again = client.post("/v1/chat/completions", json=chat()).json()
    assert again["choices"][0]["message"]["content"] == result.choices[0].text


def test_an_alias_answers_as_the_model(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=chat(model="fake-alias")).json()
    assert body["model"] == MODEL
    listed = client.get("/v1/models").json()
    assert [m["id"] for m in listed["data"]] == [MODEL, "fake-alias"]
    assert listed["data"][1]["parent"] == MODEL
    assert client.get("/v1/models/fake-alias").json()["context_length"] == 256


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/chat/completions", chat(model="nope"), 404, "model"),
        ("/v1/chat/completions", chat(max_tokens=0), 400, "max_tokens"),
        ("/v1/chat/completions", chat(max_tokens=300), 400, "max_tokens"),
        ("/v1/completions", {"model": MODEL, "prompt": [300]}, 400, "prompt[0]"),
        ("/v1/completions", {"model": MODEL, "prompt": [[104], [104, 999]]}, 400, "prompt[1][1]"),
        ("/v1/models/nope", None, 404, "model"),
    ],
)
def test_bad_requests_get_openai_errors_and_the_next_is_served(
    client: TestClient, path: str, body: dict[str, Any] | None, status: int, param: str
) -> None:
    response = client.get(path) if body is None else client.post(path, json=body)
    error = check_error(response, status)
    assert error["param"] == param, error
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200


def test_a_completions_batch_numbers_its_choices(client: TestClient) -> None:
    body = {"model": MODEL, "prompt": ["ab", "cd"], "max_tokens": 3, "n": 2, "temperature": 0}
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    completion = response.json()
    check_completion(completion)
    assert [c["index"] for c in completion["choices"]] == [0, 1, 2, 3]
    assert completion["usage"]["completion_tokens"] == 12
    raw = stream(client, "/v1/completions", {**body, "stream": True})
    texts: dict[int, str] = {}
    for event in sse.parse_events(raw):
        for choice in event["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == {c["index"]: c["text"] for c in completion["choices"]}


def test_an_engine_failure_mid_stream_is_an_in_band_error(client: TestClient) -> None:
    engine = client.app.state.services.context.hub.get(MODEL).engine  # type: ignore[attr-defined]
    runner = engine._loaded.runner
    runner.break_after = (3, RuntimeError("device lost"))  # prefill and two tokens, then fail
    raw = stream(client, "/v1/chat/completions", chat(stream=True, max_tokens=50))
    runner.broken = None
    frames = raw.split(b"\n\n")
    assert frames[-2:] == [b"data: [DONE]", b""]
    assert frames[-3].startswith(b'data: {"error":{') and b"device lost" in frames[-3]
    assert b'"content":"' in raw  # it had started: the error came in band
    assert b'"finish_reason":"length"' not in raw  # never a clean end
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200


def test_reasoning_effort_a_template_never_reads_is_reported_not_dropped(
    client: TestClient,
) -> None:
    response = client.post("/v1/chat/completions", json=chat(reasoning_effort="low"))
    assert response.status_code == 200, response.text
    assert response.headers["x-pampero-ignored-params"] == "reasoning_effort"
    plain = client.post("/v1/chat/completions", json=chat())
    assert "x-pampero-ignored-params" not in plain.headers


def test_reasoning_effort_reaches_the_template_as_vllm_passes_it() -> None:
    from pampero.protocol import parse_chat_request
    from pampero.serving.prompt import _template_kwargs

    def kwargs(**fields: Any) -> dict[str, Any] | None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}
        return _template_kwargs(parse_chat_request(orjson.dumps(body), strict=False).request)

    assert kwargs() is None
    assert kwargs(reasoning_effort="high") == {"reasoning_effort": "high"}
    both = kwargs(reasoning_effort="high", chat_template_kwargs={"reasoning_effort": "low"})
    assert both == {"reasoning_effort": "low"}
