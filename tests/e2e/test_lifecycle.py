"""Lifecycle under load: clients that give up in a crowd leave nothing behind.

(Disconnects during prefill, after the first chunk and on non-streamed requests are in
``test_disconnects.py``; SIGTERM with requests in flight in ``test_shutdown.py``; batches in
``test_batches.py``.)
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.harness import MODEL_ID

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
CROWD = 200
CLIENT_TIMEOUT_S = 0.5
DRAIN_WITHIN = 60.0  # every abandoned request aborted; generous for a loaded 2-core machine


async def impatient_crowd(url: str, body_for) -> list[str]:
    """``CROWD`` requests at once, each abandoned ``CLIENT_TIMEOUT_S`` after it was sent
    (connecting included); what each saw."""
    limits = httpx.Limits(max_connections=CROWD, max_keepalive_connections=0)
    timeout = httpx.Timeout(CLIENT_TIMEOUT_S, connect=30)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def one(i: int) -> str:
            # The whole request, not each read, has CLIENT_TIMEOUT_S: a stream that is served
            # steadily (a chunk every few tens of ms) would otherwise run to its end.
            try:
                async with asyncio.timeout(CLIENT_TIMEOUT_S):
                    body = body_for(i)
                    if body.get("stream"):
                        async with client.stream("POST", CHAT, json=body) as response:
                            async for _ in response.aiter_bytes():
                                pass
                            return str(response.status_code)
                    return str((await client.post(CHAT, json=body)).status_code)
            except (TimeoutError, httpx.TimeoutException):
                return "timeout"

        return await asyncio.gather(*(one(i) for i in range(CROWD)))


def test_a_crowd_of_impatient_clients_leaves_nothing_running(api, server):
    def errors() -> float:
        return api.metrics().value("pampero_requests_total", route=CHAT, status="500")

    before = errors()

    def body_for(i: int) -> dict:
        return api.chat_body(
            f"Story number {i}: tell it at length.",
            {"max_tokens": 500, "ignore_eos": True, "stream": i % 2 == 0},
        )

    seen = asyncio.run(impatient_crowd(server.url, body_for))
    assert set(seen) <= {"timeout", "429"}, sorted(set(seen))
    assert seen.count("timeout") >= 8  # at least every slot's worth was admitted and abandoned
    running = api.wait_running(lambda value: value == 0, timeout=DRAIN_WITHIN)
    assert running == 0
    assert api.metrics().value("pampero_requests_waiting", model=MODEL_ID) == 0
    assert errors() == before
    body = api.chat("Say hi.", max_tokens=4)  # served at once: nothing left ahead of it
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] >= 1
