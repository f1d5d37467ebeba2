"""Streaming, byte for byte: framing, headers, and parity with the non-streamed answer."""

from __future__ import annotations

import pytest

from tests.e2e import sse
from tests.e2e.harness import MODEL_ID

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(exact_api):
    """Every test here compares answers exactly: see ``exact_server`` in conftest."""
    return exact_api


PROMPT = "Count from 1 to 20, separated by commas."
USAGE = {"include_usage": True}


def test_chat_stream_framing_byte_for_byte(api):
    body = api.chat_body(PROMPT, {"max_tokens": 6, "stream": True, "stream_options": USAGE})
    stream = sse.read(api.http, "/v1/chat/completions", body)
    assert stream.status == 200
    assert stream.headers["content-type"].split(";")[0] == "text/event-stream"
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.raw.startswith(b'data: {"id":"chatcmpl-')
    events = stream.events  # every frame is exactly b"data: <json>\n\n", [DONE] last
    result = sse.chat_stream(events, include_usage=True)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [e for e in events[1:-2] if e["choices"][0]["delta"].get("content")]
    assert len(content) >= 2, "content should arrive in several chunks"
    finishing = events[-2]["choices"][0]
    assert finishing["finish_reason"] == "length"
    assert finishing["delta"] == {}
    assert result.usage is not None
    assert result.usage["completion_tokens"] == 6
    assert all(e["model"] == MODEL_ID for e in events)


def test_stream_without_include_usage_has_no_usage_chunk(api):
    result = api.stream_chat(PROMPT, max_tokens=4)  # framing checked by the helper
    assert result.usage is None
    assert result.choices[0].finish_reason == "length"


@pytest.mark.parametrize("max_tokens", [1, 12])
def test_chat_stream_equals_non_stream_at_temperature_zero(api, max_tokens):
    whole = api.chat(PROMPT, max_tokens=max_tokens)
    streamed = api.stream_chat(PROMPT, max_tokens=max_tokens, stream_options=USAGE)
    assert streamed.texts() == [whole["choices"][0]["message"]["content"]]
    assert streamed.choices[0].finish_reason == whole["choices"][0]["finish_reason"]
    assert streamed.usage is not None
    assert streamed.usage["completion_tokens"] == whole["usage"]["completion_tokens"]
    assert streamed.usage["prompt_tokens"] == whole["usage"]["prompt_tokens"]


def test_stream_runs_to_a_natural_stop(api):
    question = "Answer with one word: what color is the sky?"
    whole = api.chat(question, max_tokens=None)
    streamed = api.stream_chat(question, max_tokens=None)
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert streamed.choices[0].finish_reason == "stop"
    assert streamed.texts() == [whole["choices"][0]["message"]["content"]]


def test_n2_with_seed_streams_what_it_returns(api):
    fields = {"n": 2, "seed": 7, "temperature": 1.0, "max_tokens": 12}
    whole = api.chat("Write a short poem about rain.", **fields)
    streamed = api.stream_chat("Write a short poem about rain.", **fields, stream_options=USAGE)
    assert [c["index"] for c in whole["choices"]] == [0, 1]
    assert streamed.texts() == [c["message"]["content"] for c in whole["choices"]]
    assert streamed.usage is not None
    assert streamed.usage["completion_tokens"] == whole["usage"]["completion_tokens"]


def test_stop_string_is_never_streamed_in_part(api):
    # Stop strings are held back until they can no longer start a stop: the streamed text
    # must equal the non-streamed one, with no partial ", 4" leaking out.
    fields = {"max_tokens": 20, "stop": [", 4"]}
    whole = api.chat(PROMPT, **fields)
    streamed = api.stream_chat(PROMPT, **fields)
    assert whole["choices"][0]["stop_reason"] == ", 4"
    assert streamed.texts() == [whole["choices"][0]["message"]["content"]]
    assert streamed.choices[0].stop_reason == ", 4"
    assert streamed.choices[0].finish_reason == "stop"


def test_streamed_logprobs_cover_every_token(api):
    streamed = api.stream_chat(
        PROMPT, max_tokens=6, logprobs=True, top_logprobs=2, stream_options=USAGE
    )
    logprobs = streamed.choices[0].logprobs
    assert streamed.usage is not None
    assert len(logprobs) == streamed.usage["completion_tokens"] == 6
    assert "".join(entry["token"] for entry in logprobs) == streamed.texts()[0]


def test_completion_stream_equals_non_stream(api):
    prompt = "def fibonacci(n):"
    whole = api.complete(prompt, max_tokens=10)
    streamed = api.stream_complete(prompt, max_tokens=10, stream_options=USAGE)
    assert streamed.texts() == [whole["choices"][0]["text"]]
    assert streamed.usage is not None
    assert streamed.usage["completion_tokens"] == whole["usage"]["completion_tokens"] == 10


def test_completion_stream_with_echo_and_a_batch_of_prompts(api):
    prompts = ["def add(a, b):", "import os\n"]
    whole = api.complete(prompts, max_tokens=5, echo=True)
    streamed = api.stream_complete(prompts, max_tokens=5, echo=True)
    texts = [c["text"] for c in sorted(whole["choices"], key=lambda c: c["index"])]
    assert streamed.texts() == texts
    for prompt, text in zip(prompts, texts, strict=True):
        assert text.startswith(prompt)
