"""A thousand distinct schemas: every one compiled and served, the compiled-constraint cache
bounded, and the server's resident memory with it (the reliability matrix's constraint row)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SCHEMAS = 1000
# The cache keeps 256 compiled constraints; past them, growth must stop. What the first few
# hundred compiles bring in (the backend's state, allocator arenas) is allowed for.
GROWTH_LIMIT_MB = 400


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def schema(i: int) -> dict:
    return {
        "type": "object",
        "properties": {f"field_{i}": {"type": "integer"}, f"name_{i % 97}": {"type": "string"}},
        "required": [f"field_{i}"],
        "additionalProperties": False,
    }


def test_a_thousand_distinct_schemas_keep_memory_bounded(server, api):
    def send(i: int) -> int:
        body = api.chat_body("Hi", {"max_tokens": 1, "guided_json": schema(i)})
        return api.post("/v1/chat/completions", body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(send, range(100))) == {200}
        before = rss_mb(server.process.pid)
        assert set(pool.map(send, range(100, SCHEMAS))) == {200}
    after = rss_mb(server.process.pid)
    assert after - before < GROWTH_LIMIT_MB, (before, after)
    api.chat("Hi", max_tokens=2)
