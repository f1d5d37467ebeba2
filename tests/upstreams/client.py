"""What the gateway tests share: a gateway config over fault upstreams, a loose SSE reader
(the gateway's streams may end with an in-band error), and waiting for breakers to close."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


@dataclass
class Streamed:
    status: int
    headers: httpx.Headers
    events: list[dict[str, Any]]
    done: bool
    seconds: float

    @property
    def text(self) -> str:
        return "".join(
            (choice.get("delta") or {}).get("content") or choice.get("text") or ""
            for event in self.events
            for choice in event.get("choices") or ()
        )

    @property
    def providers(self) -> set[str]:
        return {event["provider"] for event in self.events if "provider" in event}


def stream(
    client: httpx.Client, body: dict[str, Any], path: str = "/v1/chat/completions"
) -> Streamed:
    """POST a streamed chat (or completions) request; every ``data:`` event parsed, ``[DONE]``
    noted."""
    started = time.perf_counter()
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        raw = b"".join(response.iter_raw())
    events: list[dict[str, Any]] = []
    done = False
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        assert block.startswith(b"data: "), raw[:500]
        data = block[6:]
        if data == b"[DONE]":
            done = True
            continue
        assert not done, "an event after [DONE]"
        events.append(orjson.loads(data))
    return Streamed(response.status_code, response.headers, events, done, _since(started))


def post(
    client: httpx.Client, body: dict[str, Any], path: str = "/v1/chat/completions"
) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = client.post(path, json=body)
    return response, _since(started)


def settle(
    client: httpx.Client, timeout: float = 15.0, ignore: frozenset[str] | set[str] = frozenset()
) -> None:
    """Wait until no provider is cooling down (a test's failures must not leak into the next)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        providers = [p for p in client.get("/v1/providers").json()["data"] if p["id"] not in ignore]
        if all(p["state"] != "open" and p["outstanding"] == 0 for p in providers):
            return
        time.sleep(0.05)
    raise AssertionError(f"providers still cooling down: {providers}")


def _since(started: float) -> float:
    return time.perf_counter() - started
