"""The backend example in docs/backends.md, run as written beside the local model."""

from __future__ import annotations

import re
from pathlib import Path

import openai
import pytest

from tests.e2e.harness import check_error

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "backends.md"


@pytest.fixture(scope="module")
def echo_server(launch, tmp_path_factory):
    block = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block is not None, "docs/backends.md lost its example"
    assert len(block.group(1).splitlines()) <= 40
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "echo_backend.py").write_text(block.group(1), encoding="utf-8")
    with launch("--backend", "echo_backend:echo_backends", env={"PYTHONPATH": str(folder)}) as s:
        yield s


def test_the_example_backend_answers_beside_the_local_model(echo_server):
    with openai.OpenAI(base_url=echo_server.url + "/v1", api_key="x", max_retries=0) as client:
        models = {m.id for m in client.models.list().data}
        assert {"echo", "Qwen/Qwen2.5-Coder-0.5B-Instruct"} <= models
        said = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hola mundo feliz"}], max_tokens=2
        )
        assert said.choices[0].message.content == "hola mundo"
        stream = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "uno dos tres"}], stream=True
        )
        pieces = [c.choices[0].delta.content or "" for c in stream]
        assert "".join(pieces) == "uno dos tres"
        local = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
        assert local.model == "Qwen/Qwen2.5-Coder-0.5B-Instruct"


def test_a_field_the_backend_cannot_honour_is_refused_by_name(echo_server):
    api = echo_server.api(model="echo")
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}
    error = check_error(api.post("/v1/chat/completions", body), 400)
    assert error["param"] == "temperature"
    assert error["code"] == "unsupported_parameter"
    missing = check_error(api.post("/v1/completions", {"model": "echo", "prompt": "hi"}), 404)
    assert missing["param"] == "model"
    fine = api.post("/v1/chat/completions", {**body, "temperature": None} | {"max_tokens": 1})
    assert fine.status_code == 400  # sent, even as null: still a field it does not honour
    fine = api.post("/v1/chat/completions", {k: v for k, v in body.items() if k != "temperature"})
    assert fine.status_code == 200 and fine.json()["choices"][0]["message"]["content"] == "hi"
    api.close()
