"""A client that goes away gets its sequence aborted, and nobody else notices.

Every long request here asks for 1000-2000 tokens with ``ignore_eos``: a minute or more on this
machine, so ``pampero_requests_running`` falling back to 0 within a step or two of the client
leaving (2 s while decoding) can only mean the engine dropped it.
"""

from __future__ import annotations

import json
import socket
import threading
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e import sse

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
PROMPT = "Tell me a very long story about a lighthouse keeper."
ABORT_WITHIN = 2.0
# An abort lands at the next engine step; during prefill a step is a 256-token chunk, which
# takes seconds on a busy 2-core machine (a 3000-token prompt holds its slot for a minute).
PREFILL_ABORT_WITHIN = 10.0


def long_body(api, content=PROMPT, **fields):
    return api.chat_body(content, {"max_tokens": 2000, "ignore_eos": True, **fields})


def wait_until_running(api, count):
    value = api.wait_running(lambda running: running >= count, timeout=60)
    assert value >= count, f"expected {count} running sequences, saw {value}"


def assert_drains(api, within=ABORT_WITHIN):
    value = api.wait_running(lambda running: running == 0, timeout=within)
    assert value == 0, f"{value} sequences still running {within} s after the client left"


class Bystander(threading.Thread):
    """A short concurrent stream that must finish untouched."""

    def __init__(self, api, max_tokens=40):
        super().__init__()
        self.api, self.max_tokens, self.result, self.error = api, max_tokens, None, None

    def run(self):
        try:
            self.result = self.api.stream_chat(
                "Count from 1 to 100.",
                max_tokens=self.max_tokens,
                ignore_eos=True,
                stream_options={"include_usage": True},
            )
        except BaseException as exc:  # re-raised in the test's thread
            self.error = exc

    def check(self):
        self.join(timeout=120)
        if self.error is not None:
            raise self.error
        assert self.result.usage["completion_tokens"] == self.max_tokens
        assert self.result.choices[0].finish_reason == "length"


def test_streaming_client_that_leaves_is_aborted(api, server):
    assert_drains(api)
    leaver = httpx.Client(base_url=server.url, timeout=60)
    with leaver, leaver.stream("POST", CHAT, json=long_body(api, stream=True)) as response:
        assert response.status_code == 200
        # Keep the iterator: a discarded one closes the connection (httpcore closes the stream
        # on GeneratorExit), and the client would leave too early.
        lines = response.iter_lines()
        assert sse.next_data(lines).startswith("data: ")
        bystander = Bystander(api)
        bystander.start()
        wait_until_running(api, 2)
        assert sse.next_data(lines).startswith("data: ")  # still connected, still streaming
    # leaving the block closed the connection mid-stream
    bystander.check()
    assert_drains(api)


def test_streaming_client_that_leaves_during_prefill_is_aborted(api, server):
    assert_drains(api)
    long_prompt = "word " * 3000  # several prefill steps before the first token
    with httpx.Client(base_url=server.url, timeout=60) as leaver:
        body = long_body(api, long_prompt, stream=True, max_tokens=1000)
        with leaver.stream("POST", CHAT, json=body) as response:
            assert response.status_code == 200
            wait_until_running(api, 1)
    assert_drains(api, within=PREFILL_ABORT_WITHIN)


def raw_request(url, body):
    """An HTTP/1.1 request on a plain socket, so the test decides when the connection ends."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    sock.sendall(head + payload)
    return sock


def test_non_streaming_client_that_closes_is_aborted(api, server):
    assert_drains(api)
    sock = raw_request(server.url, long_body(api))
    try:
        wait_until_running(api, 1)
        bystander = Bystander(api, max_tokens=20)
        bystander.start()
        wait_until_running(api, 2)
    finally:
        sock.close()
    bystander.check()
    assert_drains(api)


def test_non_streaming_client_that_times_out_is_aborted(api, server):
    assert_drains(api)
    impatient = httpx.Client(base_url=server.url, timeout=httpx.Timeout(30, read=1.5))
    with impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post(CHAT, json=long_body(api))
    assert_drains(api)


def test_the_server_still_answers_after_the_aborts(api):
    body = api.chat("Say hi.", max_tokens=4)
    assert body["choices"][0]["message"]["content"]
    assert api.running() == 0
