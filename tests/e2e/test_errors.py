"""Every failure comes back in OpenAI's error shape with the right status and ``param``.

``check_error`` (harness) asserts the body is exactly ``{"error": {"message", "type", "param",
"code"}}`` and matches the spec's ``ErrorResponse``, so a FastAPI-style 422 ``detail`` fails.
"""

from __future__ import annotations

import concurrent.futures

import openai
import pytest

from tests.e2e.harness import check_error

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello"}]


def chat_body(**fields):
    return {"model": "gpt-4o", "messages": HELLO, "max_tokens": 4, **fields}


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"[1, 2]", b'"text"', b'{"model": "gpt-4o", "messages": [}']
)
def test_bodies_that_are_not_a_json_object(api, raw):
    error = api.error(CHAT, raw, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": "Hello"}, "messages"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"temperature": "0.5"}, "temperature"),
        ({"stream": 1}, "stream"),
        ({"n": 1.5}, "n"),
        ({"stop": 5}, "stop"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_wrong_types_name_the_field(api, fields, param):
    error = api.error(CHAT, chat_body(**fields), 400)
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs
        ({"logit_bias": {"1": 101}}, "logit_bias"),
        ({"stop_token_ids": [-1]}, "stop_token_ids[0]"),
        ({"allowed_token_ids": [1, 10**7]}, "allowed_token_ids[1]"),
        ({"logit_bias": {"9999999": 1}}, "logit_bias[0]"),
        ({"min_tokens": 10, "max_tokens": 5}, "min_tokens"),
        ({"max_tokens": 4, "max_completion_tokens": 5}, "max_completion_tokens"),
        ({"seed": 2**64}, "seed"),
        ({"top_k": -2}, "top_k"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"n": 9}, "n"),  # more than the 8 sequences the server decodes at once
    ],
)
def test_out_of_range_values_name_the_field(api, fields, param):
    error = api.error(CHAT, chat_body(**fields), 400)
    assert error["param"] == param, error


@pytest.mark.parametrize(("missing", "param"), [("model", "model"), ("messages", "messages")])
def test_missing_required_fields(api, missing, param):
    body = chat_body()
    del body[missing]
    error = api.error(CHAT, body, 400)
    assert error["param"] == param
    assert "Missing required parameter" in error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, {"model": "no-such-model", "messages": HELLO}),
        ("/v1/completions", {"model": "no-such-model", "prompt": "Hi"}),
        ("/tokenize", {"model": "no-such-model", "prompt": "Hi"}),
    ],
)
def test_unknown_model_is_404(api, path, body):
    error = api.error(path, body, 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "Qwen/Qwen2.5-Coder-0.5B-Instruct" in error["message"]  # lists what exists


def test_unknown_route_and_wrong_method(api):
    missing = check_error(api.http.get("/v2/chat/completions"), 404)
    assert missing["type"] == "not_found_error"
    wrong = check_error(api.http.get(CHAT), 405)
    assert wrong["type"] == "invalid_request_error"


def test_prompt_longer_than_the_context(api):
    long_text = "hello " * 5000  # about 5000 tokens, over --n-ctx 4096
    error = api.error(CHAT, chat_body(messages=[{"role": "user", "content": long_text}]), 400)
    assert error["code"] == "context_length_exceeded"
    error = api.error("/v1/completions", {"model": "gpt-4o", "prompt": long_text}, 400)
    assert error["code"] == "context_length_exceeded"


def test_prompt_plus_max_tokens_over_the_context(api):
    short = [{"role": "user", "content": "Say hi."}]
    n_short = api.tokenize(messages=short)["count"]
    fits = api.chat(messages=short, max_tokens=4096 - n_short)  # the model stops on its own
    assert fits["choices"][0]["finish_reason"] == "stop"
    error = api.error(CHAT, chat_body(messages=short, max_tokens=4097 - n_short), 400)
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "max_tokens"
    assert "4096" in error["message"]
    long = [{"role": "user", "content": "hello " * 3000}]
    assert 4096 - 2000 < api.tokenize(messages=long)["count"] < 4096  # the prompt alone fits
    error = api.error(
        CHAT, chat_body(messages=long, max_tokens=None, max_completion_tokens=2000), 400
    )
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "max_completion_tokens"


@pytest.mark.parametrize(
    ("prompt", "param"),
    [
        ([999999], "prompt[0]"),
        ([1, 2, -1], "prompt[2]"),
        ([[15339], [15339, 151936]], "prompt[1][1]"),
    ],
)
def test_token_prompts_outside_the_vocabulary_fail_alone(api, prompt, param):
    # Once, such a prompt failed llama_decode for its whole batch: every stream decoding
    # beside it ended with a 500. Now it is a 400, and the stream beside it is untouched.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        beside = pool.submit(
            api.stream_complete,
            "def fib(n):",
            max_tokens=48,
            ignore_eos=True,
            stream_options={"include_usage": True},
        )
        api.wait_running(lambda running: running >= 1, timeout=60)
        error = api.error("/v1/completions", {"model": "gpt-4o", "prompt": prompt}, 400)
        assert error["param"] == param, error
        assert error["type"] == "invalid_request_error"
        result = beside.result(timeout=180)
    assert result.choices[0].finish_reason == "length"  # no in-band error (sse.read checks)
    assert result.usage is not None and result.usage["completion_tokens"] == 48
    assert api.complete([15339, 11], max_tokens=2)["choices"][0]["finish_reason"] == "length"


def test_errors_reach_the_openai_sdk_as_its_exception_types(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="gpt-4o", messages=HELLO, temperature=3)
        assert bad.value.param == "temperature"
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="no-such-model", messages=HELLO)
        assert missing.value.code == "model_not_found"
