"""A bounded soak against the shared server (``benchmarks/soak.py``): a minute of mixed chat,
streams, schemas, tools, abandoned streams and bad requests, then no 5xx, nothing running, and
descriptors, threads and memory back near their baseline."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import MODEL_ID

pytestmark = pytest.mark.e2e

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import soak  # noqa: E402


def test_a_minute_of_mixed_traffic_leaves_the_server_as_it_found_it(server):
    figures = asyncio.run(soak.soak(server.url, server.process.pid, MODEL_ID, 60, 2.0))
    assert figures.sent >= 100
    assert not figures.problems(), figures.render([])
    bad = figures.statuses
    assert set(bad["bad-json"]) == {400} and set(bad["bad-model"]) == {404}
    assert set(bad["bad-param"]) == {400}
    assert set(bad["chat"]) == {200} and set(bad["stream"]) == {200}
