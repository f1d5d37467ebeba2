"""Hostile values the reliability matrix names that other modules do not: lone surrogates,
non-finite numbers, huge and out-of-vocabulary ``logit_bias``, and ``Host`` headers that are not
host names. Each row: the exact bytes sent, a 4xx in OpenAI's error shape (or, for ``Host``, no
5xx and no hang), and the next normal request served."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.e2e.harness import MODEL_ID, check_error

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"


def raw_chat(extra: str, content: str = "hi") -> bytes:
    """A chat body as raw JSON text, so values JSON parsers would never write can be sent."""
    return (
        f'{{"model": "{MODEL_ID}", "max_tokens": 2, '
        f'"messages": [{{"role": "user", "content": "{content}"}}]{extra}}}'
    ).encode()


SURROGATES = {
    "content-high": raw_chat("", content="a \\ud800 b"),
    "content-low": raw_chat("", content="a \\udc00 b"),
    "stop": raw_chat(', "stop": ["\\ud83d"]'),
    "tool-arguments": (
        f'{{"model": "{MODEL_ID}", "max_tokens": 2, "messages": ['
        '{"role": "user", "content": "hi"},'
        '{"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",'
        ' "function": {"name": "f", "arguments": "{\\"a\\": \\"\\udfff\\"}"}}]},'
        '{"role": "tool", "tool_call_id": "c1", "content": "ok"}]}'
    ).encode(),
    "raw-invalid-utf8": raw_chat("").replace(b'"hi"', b'"\xed\xa0\x80"'),
}
NON_FINITE = {
    "temperature-NaN": raw_chat(', "temperature": NaN'),
    "temperature-Infinity": raw_chat(', "temperature": Infinity'),
    "top_p-minus-Infinity": raw_chat(', "top_p": -Infinity'),
    "temperature-1e400": raw_chat(', "temperature": 1e400'),
    "logit_bias-NaN": raw_chat(', "logit_bias": {"5": NaN}'),
    "frequency_penalty-1e400": raw_chat(', "frequency_penalty": -1e400'),
}
BIAS = {
    "huge": ({"logit_bias": {"5": 1e308}}, "logit_bias"),
    "negative-huge": ({"logit_bias": {"5": -1e308}}, "logit_bias"),
    "out-of-vocabulary": ({"logit_bias": {"151936": 1}}, "logit_bias[0]"),
    "negative-id": ({"logit_bias": {"-1": 1}}, "logit_bias"),
    "far-out": ({"logit_bias": {str(2**40): 1}}, "logit_bias"),
}


@pytest.mark.parametrize("body", SURROGATES.values(), ids=SURROGATES.keys())
def test_lone_surrogates_are_a_400(api, body):
    error = check_error(api.post(CHAT, body, headers={"content-type": "application/json"}), 400)
    assert error["type"] == "invalid_request_error"
    api.chat("Hi", max_tokens=2)


@pytest.mark.parametrize("body", NON_FINITE.values(), ids=NON_FINITE.keys())
def test_non_finite_numbers_are_a_400(api, body):
    check_error(api.post(CHAT, body, headers={"content-type": "application/json"}), 400)
    api.chat("Hi", max_tokens=2)


@pytest.mark.parametrize(("fields", "param"), BIAS.values(), ids=BIAS.keys())
def test_logit_bias_out_of_range_names_the_field(api, fields, param):
    error = api.error(CHAT, api.chat_body("Hi", fields), 400)
    assert error["param"] == param, error
    api.chat("Hi", max_tokens=2)


def test_a_logit_bias_for_every_token_is_served_or_refused_cleanly(api):
    bias = {str(token): -1 for token in range(0, 151_000, 3)}  # 50,334 entries, ~0.8 MB
    response = api.post(CHAT, api.chat_body("Hi", {"logit_bias": bias, "max_tokens": 2}))
    assert response.status_code in (200, 400, 413), response.text[:300]
    if response.status_code != 200:
        check_error(response, response.status_code)
    api.chat("Hi", max_tokens=2)


def raw_request(url: str, host: str) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("host", ["a/b", "a?b", "[", "[::1", "a b", "a@b:1", "%00", ""])
def test_odd_host_headers_are_never_a_5xx(server, api, host):
    reply = raw_request(server.url, host)
    status = int(reply.split(b" ", 2)[1])
    assert status in (200, 400), reply[:300]
    api.chat("Hi", max_tokens=2)


def test_a_dripping_body_gets_a_408_while_others_are_served(launch):
    with launch("--body-timeout", "3") as slow_server:
        api = slow_server.api()
        parts = urlsplit(slow_server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
            sock.sendall(
                f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n".encode()
                + b'{"model": "'
            )
            api.chat("Hi", max_tokens=2)  # served while the other body drips
            for _ in range(3):
                sock.sendall(b" ")
                time.sleep(0.5)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
                if b"\r\n\r\n" in reply and reply.rstrip().endswith(b"}"):
                    break
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), reply[:300]
        error = json.loads(body)["error"]
        assert error["code"] == "request_timeout" and "3 s" in error["message"]
        api.chat("Hi", max_tokens=2)
        api.close()
