"""Logs at debug level keep no secret: after keyed, wrongly keyed and image-carrying requests
(good and bad), the server's whole log holds no API key, no ``Authorization`` value and no
base64 payload a client sent."""

from __future__ import annotations

import base64
import secrets

import httpx
import pytest

from tests.e2e.harness import MODEL_ID

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"


def test_debug_logs_hold_no_key_and_no_base64_payload(launch):
    key = "sk-log-" + secrets.token_hex(12)
    wrong = "sk-wrong-" + secrets.token_hex(12)
    payload = base64.b64encode(b"PAMPERO-CANARY-" + secrets.token_bytes(96)).decode()
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{payload}"}}
    body = {"model": MODEL_ID, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    with_image = body | {"messages": [{"role": "user", "content": [image]}]}
    with launch("--api-key", key, "--log-level", "debug") as server:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            good = {"authorization": f"Bearer {key}"}
            assert client.post(CHAT, json=body, headers=good).status_code == 200
            assert client.post(CHAT, json=body, headers={"authorization": wrong}).status_code == 401
            bad = {"authorization": f"Bearer {wrong}"}
            assert client.post(CHAT, json=body, headers=bad).status_code == 401
            assert client.post(CHAT, json=with_image, headers=good).status_code == 400
            assert client.post(CHAT, json=with_image, headers=bad).status_code == 401
            broken = f'{{"model": "{MODEL_ID}", "messages": [{{"content": "{payload}"'
            assert client.post(CHAT, content=broken, headers=good).status_code == 400
            assert client.get("/v1/models", headers=good).status_code == 200
        log = server.log()
    assert "DEBUG" in log or "debug" in log.lower()  # the level really was debug
    for secret in (key, wrong, payload[:40], payload[-40:]):
        assert secret not in log, f"{secret[:12]}... is in the server log"
    assert "Bearer " not in log
