"""End-to-end fixtures: real ``pampero serve`` processes on the real default model.

``server`` (the session-wide default server), ``api`` and ``launch`` come from
``tests/conftest.py``, shared with the other suites. Here: ``keyed_server``, a session-wide
server requiring the bearer key ``api_key``, and ``exact_api``, which talks to one whose answers
depend only on the request (see ``exact_server``). Helpers live in ``harness.py``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.e2e.harness import Api, Launcher, Server


@pytest.fixture(scope="session")
def exact_server(launch: Launcher) -> Iterator[Server]:
    """A server for tests that compare two answers exactly (stream against non-stream, seed
    against seed). With the prefix cache a prompt is partly reused from KV that was computed
    in another batch shape, which moves logits in the third digit: enough to change a
    temperature-1 draw, or a greedy near-tie. Without it, an answer depends on the request
    alone."""
    with launch("--no-prefix-cache") as running:
        yield running


@pytest.fixture(scope="session")
def exact_api(exact_server: Server) -> Iterator[Api]:
    client = exact_server.api()
    yield client
    client.close()


@pytest.fixture(scope="session")
def api_key() -> str:
    return "sk-e2e-" + secrets.token_hex(8)


# The seed examples without max_tokens run until the model stops, which at temperature 0.7
# can take the whole context (minutes here); a context just above the largest budget a seed
# sets (seed 003: max_tokens=1000) bounds them without touching their text.
SEED_CONTEXT = "1100"


@pytest.fixture(scope="session")
def keyed_server(launch: Launcher, api_key: str) -> Iterator[Server]:
    """A server requiring ``api_key``; the seed examples run against it."""
    with launch("--api-key", api_key, "--n-ctx", SEED_CONTEXT) as running:
        yield running
