"""Behaviour that needs a server started with other flags: API keys, strict parameters, a small
body limit, a tiny queue, and a public bind."""

from __future__ import annotations

import sys
import threading

import httpx
import openai
import pytest

from tests.e2e import sse
from tests.e2e.harness import check_error, run_to_exit, serve_command

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello"}]
BODY = {"model": "gpt-4o", "messages": HELLO, "max_tokens": 2, "temperature": 0}


# -- API keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key", "Bearer", "Basic {key}", "{key}", "Bearer {key}x"]
)
def test_requests_without_the_key_are_401(keyed_server, api_key, authorization):
    headers = {} if authorization is None else {"authorization": authorization.format(key=api_key)}
    response = httpx.post(keyed_server.url + CHAT, json=BODY, headers=headers, timeout=60)
    error = check_error(response, 401)
    assert error["type"] == "authentication_error"
    assert error["code"] == "invalid_api_key"
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_key_opens_every_route_but_health_needs_none(keyed_server, api_key):
    assert httpx.get(keyed_server.url + "/health", timeout=30).status_code == 200
    assert httpx.get(keyed_server.url + "/v1/models", timeout=30).status_code == 401
    assert httpx.get(keyed_server.url + "/metrics", timeout=30).status_code == 401
    stream = httpx.post(keyed_server.url + CHAT, json={**BODY, "stream": True}, timeout=30)
    check_error(stream, 401)  # refused before any event, as JSON
    api = keyed_server.api(key=api_key)
    try:
        assert api.chat(messages=HELLO, max_tokens=2)["usage"]["completion_tokens"] >= 1
        assert api.http.get("/v1/models").status_code == 200
        assert api.http.get("/metrics").status_code == 200
    finally:
        api.close()


def test_openai_sdk_with_a_wrong_and_a_right_key(keyed_server, api_key):
    base = keyed_server.url + "/v1"
    wrong = openai.OpenAI(base_url=base, api_key="wrong", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    with openai.OpenAI(base_url=base, api_key=api_key, max_retries=0) as client:
        assert "gpt-4o" in [m.id for m in client.models.list()]


# -- --strict-params ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_api(launch):
    with launch("--strict-params") as server:
        api = server.api()
        yield api
        api.close()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"frobnicate": True}, "frobnicate"),
        ({"messages": [{"role": "user", "content": "Hi", "mood": "happy"}]}, "messages[0].mood"),
    ],
)
def test_strict_params_refuse_unknown_fields(strict_api, fields, param):
    error = strict_api.error(CHAT, {**BODY, **fields}, 400)
    assert error["param"] == param
    assert param in error["message"]


def test_strict_params_still_take_known_fields(strict_api):
    response = strict_api.chat_response(messages=HELLO, max_tokens=2, user="u-1", top_k=5)
    assert response.headers["x-pampero-ignored-params"] == "user"  # known, no local effect
    error = strict_api.error("/tokenize", {"prompt": "Hi", "bogus": 1}, 400)
    assert error["param"] == "bogus"


# -- request body limit ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_body_api(launch):
    with launch(env={"PAMPERO_MAX_BODY_BYTES": "4096"}) as server:
        api = server.api()
        yield api
        api.close()


def test_body_over_the_limit_is_413(small_body_api):
    big = {**BODY, "messages": [{"role": "user", "content": "x" * 5000}]}
    error = small_body_api.error(CHAT, big, 413)
    assert error["code"] == "request_too_large"
    assert "4096" in error["message"]
    assert small_body_api.chat(messages=HELLO, max_tokens=2)["choices"]


def test_chunked_body_over_the_limit_is_413(small_body_api):
    def chunks():
        yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    response = small_body_api.http.post(CHAT, content=chunks())  # no content-length
    assert "content-length" not in response.request.headers
    check_error(response, 413)


# -- queue limit -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_seat_api(launch):
    with launch("--max-seqs", "1", "--max-queue", "0") as server:
        api = server.api()
        yield api
        api.close()


def test_overload_is_429_with_retry_after(one_seat_api):
    api = one_seat_api
    long = api.chat_body(
        "Tell me a long story.", {"max_tokens": 2000, "ignore_eos": True, "stream": True}
    )
    with api.http.stream("POST", CHAT, json=long) as holder:
        assert holder.status_code == 200
        lines = holder.iter_lines()  # held: a discarded iterator would close the connection
        assert sse.next_data(lines).startswith("data: ")
        assert api.wait_running(lambda running: running == 1, timeout=60) == 1  # slot taken
        for body in ({**BODY}, {**BODY, "stream": True}):
            response = api.post(CHAT, body)
            error = check_error(response, 429)
            assert error["type"] == "rate_limit_error"
            assert int(response.headers["retry-after"]) >= 1
        assert sse.next_data(lines).startswith("data: ")  # the holder still streams
    assert api.wait_running(lambda running: running == 0, timeout=5) == 0
    assert api.chat(messages=HELLO, max_tokens=2)["choices"]


def test_a_burst_gets_some_answers_and_429s(one_seat_api):
    statuses: list[int] = []

    def fire():
        response = one_seat_api.post(CHAT, {**BODY, "max_tokens": 24, "ignore_eos": True})
        if response.status_code == 429:
            assert "retry-after" in response.headers
        statuses.append(response.status_code)

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) == {200, 429}, statuses


# -- public bind -------------------------------------------------------------------------------


def test_public_bind_without_keys_refuses_to_start(pampero_env):
    done = run_to_exit(serve_command("--host", "0.0.0.0", "--port", "0"), pampero_env)
    assert done.returncode != 0
    assert "refusing to bind 0.0.0.0 without API keys" in done.stderr
    assert "--api-key" in done.stderr and "--insecure-no-auth" in done.stderr
    assert "Traceback" not in done.stderr
    assert "input_value" not in done.stderr  # one clear line, not pydantic's dump


def test_settings_errors_never_print_the_api_key(pampero_env):
    # No config file and no PAMPERO_HOME: the keys come first in what pydantic echoes back.
    env = {k: v for k, v in pampero_env.items() if k != "PAMPERO_HOME"}
    flags = ["--api-key", "hunter2", "--n-batch", "16", "--max-seqs", "32"]
    done = run_to_exit([sys.executable, "-m", "pampero", "serve", *flags], env)
    assert done.returncode == 2
    assert "n_batch (16) must be at least max_seqs (32)" in done.stderr
    assert "hunter2" not in done.stderr


def test_public_bind_with_insecure_no_auth_starts(launch):
    with launch("--insecure-no-auth", host="0.0.0.0") as server:
        assert httpx.get(server.url + "/health", timeout=30).status_code == 200
        assert httpx.get(server.url + "/v1/models", timeout=30).status_code == 200


def test_a_model_that_will_not_load_is_one_line_not_a_traceback(pampero_env, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file" * 1000)
    done = run_to_exit(
        [sys.executable, "-m", "pampero", "serve", "--model", str(broken), "--port", "0"],
        pampero_env,
    )
    assert done.returncode == 3
    assert f"pampero could not start: llama.cpp could not load {broken}" in done.stderr
    assert "Traceback" not in done.stderr
