"""Hostile request shapes: the client gets OpenAI's error shape (or a safe 200), the server stays
healthy, and the next normal request is served.

Rows here: unknown field names that are not header-safe, oversized request heads and too many
headers (431 before anything parses them, with or without a key), and a client that leaves in
the middle of its body (a quiet 499 in the metrics, no traceback in the log).
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.harness import check_error

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
IGNORED = "x-pampero-ignored-params"

# (field name as sent, as the header shows it)
HOSTILE_NAMES = [
    ("caf\u00e9", "caf%C3%A9"),
    ("\u540d\u524d", "%E5%90%8D%E5%89%8D"),
    ("a\r\nX-Injected: 1", "a%0D%0AX-Injected:%201"),
    ("x" * 5000, "x" * 97 + "..."),
]


def assert_served(api):
    assert api.chat("Say hi.", max_tokens=2)["choices"][0]["message"]["content"] is not None


@pytest.mark.parametrize(("name", "shown"), HOSTILE_NAMES)
def test_unknown_field_names_are_reported_header_safe(api, name, shown):
    response = api.chat_response("Say hi.", max_tokens=2, **{name: 1})
    assert response.headers[IGNORED] == shown
    assert "x-injected" not in response.headers
    streamed = api.post(CHAT, api.chat_body("Say hi.", {"max_tokens": 2, "stream": True, name: 1}))
    assert streamed.status_code == 200
    assert streamed.headers[IGNORED] == shown
    assert streamed.text.rstrip().endswith("data: [DONE]")
    completed = api.post(COMPLETIONS, api.completion_body("x", {"max_tokens": 2, name: 1}))
    assert completed.status_code == 200 and completed.headers[IGNORED] == shown


def test_thousands_of_unknown_fields_give_a_bounded_header(api):
    fields = {f"field_{i}": i for i in range(5000)}
    response = api.chat_response("Say hi.", max_tokens=2, **fields)
    value = response.headers[IGNORED]
    assert len(value) <= 2000
    assert value.startswith("field_0, field_1, ") and value.endswith(" more")


def test_a_huge_header_is_431_before_auth(keyed_server):
    with httpx.Client(base_url=keyed_server.url, timeout=30) as client:
        response = client.post(CHAT, headers={"x-filler": "a" * 65536}, json={})
        error = check_error(response, 431)
        assert error["code"] == "request_headers_too_large"
        assert error["type"] == "invalid_request_error"
        assert client.get("/health").status_code == 200


def test_a_huge_request_line_is_431(api):
    error = check_error(api.http.get("/v1/models?q=" + "a" * 20000), 431)
    assert error["code"] == "request_headers_too_large"
    assert_served(api)


def test_a_head_still_growing_past_the_cap_is_cut_off_by_the_parser(server):
    """The parser buffers no more than the cap of an unfinished head (a 64 MB header would
    otherwise be read whole): past it, a 431 and the connection closes."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nX-Filler: ".encode() + b"a" * 10000)
        time.sleep(0.2)
        sock.sendall(b"a" * 10000)  # 20 KB of head, still no end in sight
        raw = _read_all(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), raw[:200]
    assert json.loads(body)["error"]["code"] == "request_headers_too_large"


def test_too_many_headers_are_431_before_auth(keyed_server):
    many = [(f"x-h-{i}", "1") for i in range(200)]  # 2 KB: under the byte cap, over the count
    with httpx.Client(base_url=keyed_server.url, timeout=30) as client:
        error = check_error(client.post(CHAT, headers=many, json={}), 431)
        assert "200" in error["message"] or "headers" in error["message"]
        thousands = [(f"x-h-{i}", "1") for i in range(10_000)]  # over the byte cap too
        check_error(client.post(CHAT, headers=thousands, json={}), 431)


def test_a_malformed_request_head_is_a_400_in_openai_shape(server):
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost x\r\n\r\n")  # no colon
        raw = _read_all(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def _read_all(sock):
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_client_leaving_mid_body_is_a_quiet_499(api, server):
    def count(status):
        return api.metrics().value("pampero_requests_total", route=CHAT, status=status)

    before_499, before_500 = count("499"), count("500")
    log_before = len(server.log())
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            f"POST {CHAT} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n".encode()
            + b'{"model": "gpt-4o", "messages": ['
        )
        time.sleep(0.3)  # let the server start reading the body
    deadline = time.monotonic() + 20
    while count("499") == before_499 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count("499") == before_499 + 1
    assert count("500") == before_500
    log = server.log()[log_before:]
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
    assert_served(api)
