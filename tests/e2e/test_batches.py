"""A batched ``/v1/completions`` request (a list of prompts) lives and dies as one request.

Every row: the batch is refused or abandoned, then ``pampero_requests_running`` and
``pampero_requests_waiting`` are back to 0 (or to what other tests left running), and the next
normal request is served. The long prompts ask for 3000 tokens with ``ignore_eos``: minutes on
this machine, so a gauge back at 0 within ``ABORT_WITHIN`` can only mean the engine dropped the
siblings.
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e import sse
from tests.e2e.harness import MODEL_ID, check_error

pytestmark = pytest.mark.e2e

COMPLETIONS = "/v1/completions"
STORIES = ["Once upon a time", "The lighthouse keeper", "In the year 3000"]
# An abort lands at the next engine step: milliseconds when the machine is quiet, but once,
# with the 2 cores shared by other test runs (load average 15), 10 s were not enough.
ABORT_WITHIN = 30.0


def long_batch(api, prompts=STORIES, **fields):
    return api.completion_body(list(prompts), {"max_tokens": 3000, "ignore_eos": True, **fields})


def waiting(api) -> float:
    return api.metrics().value("pampero_requests_waiting", model=MODEL_ID)


def assert_idle(api, within=ABORT_WITHIN):
    value = api.wait_running(lambda running: running == 0, timeout=within)
    assert value == 0, f"{value} sequences still running {within} s after the batch ended"
    assert waiting(api) == 0


def assert_still_serving(api):
    body = api.complete("def add(a, b):", max_tokens=4)
    assert body["choices"][0]["text"]
    assert_idle(api)


def raw_post(url, path, body):
    """A request on a plain socket, so the test decides when the connection ends."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    sock.sendall(head + payload)
    return sock


def test_a_batch_with_a_refused_prompt_starts_none_of_its_prompts(api):
    assert_idle(api)
    body = long_batch(api, [*STORIES, "word " * 5000])  # the last one is past the context
    error = check_error(api.post(COMPLETIONS, body), 400)
    assert error["code"] == "context_length_exceeded"
    # Had the first three been submitted, the engine would have admitted them by now.
    time.sleep(1.0)
    assert api.running() == 0 and waiting(api) == 0
    assert_still_serving(api)


def test_a_non_streamed_batch_whose_client_leaves_is_aborted_whole(api, server):
    assert_idle(api)
    sock = raw_post(server.url, COMPLETIONS, long_batch(api))
    try:
        value = api.wait_running(lambda running: running >= 3, timeout=60)
        assert value == 3
    finally:
        sock.close()
    assert_idle(api)
    assert_still_serving(api)


def test_a_streamed_batch_whose_client_leaves_is_aborted_whole(api, server):
    assert_idle(api)
    body = long_batch(api, stream=True)
    with (
        httpx.Client(base_url=server.url, timeout=60) as leaver,
        leaver.stream("POST", COMPLETIONS, json=body) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert sse.next_data(lines).startswith("data: ")
        value = api.wait_running(lambda running: running >= 3, timeout=60)
        assert value == 3
    assert_idle(api)
    assert_still_serving(api)


def test_a_batch_larger_than_the_server_can_ever_hold_is_a_400_that_queues_nothing(api):
    assert_idle(api)
    body = api.completion_body([f"prompt {i}" for i in range(200)], {"max_tokens": 1})
    error = check_error(api.post(COMPLETIONS, body), 400)
    assert error["param"] == "prompt"
    assert "200 prompts" in error["message"]
    assert waiting(api) == 0
    assert_still_serving(api)


def test_a_batch_the_queue_cannot_hold_now_is_a_429_that_queues_nothing(api, server):
    """With one slot of 8 busy, 72 prompts (within 8 slots + 64 queued when idle) do not fit."""
    assert_idle(api)
    sock = raw_post(server.url, COMPLETIONS, long_batch(api, ["Tell me a story"]))
    try:
        assert api.wait_running(lambda running: running >= 1, timeout=60) == 1
        body = api.completion_body([f"prompt {i}" for i in range(72)], {"max_tokens": 1})
        response = api.post(COMPLETIONS, body)
        error = check_error(response, 429)
        assert error["type"] == "rate_limit_error"
        assert int(response.headers["retry-after"]) >= 1
        assert waiting(api) == 0
        assert api.running() == 1  # only the long request
        body = api.complete("def add(a, b):", max_tokens=4)  # others are not refused
        assert body["choices"][0]["text"]
    finally:
        sock.close()
    assert_idle(api)
