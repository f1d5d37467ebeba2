"""End-to-end fixtures: real ``pampero serve`` processes on the real default model.

``server`` is one session-wide process serving ``configs/default.yaml`` (the default model with
the seed documents' model ids as aliases) on a free loopback port; ``api`` talks to it. Tests
that need other flags start a short-lived one with ``launch("--strict-params")``;
``keyed_server`` is a session-wide one that requires the bearer key ``api_key``, and
``exact_api`` talks to one whose answers depend only on the request (see ``exact_server``).

The model comes from ``PAMPERO_HOME`` if set, else from pampero's default home, where
``scripts/install.sh`` assembles it; ``pampero model-path`` runs once first, so a missing model
is assembled before any server's start-up clock runs. Helpers live in ``harness.py``.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from tests.e2e.harness import Api, Server, pampero_environment, start_server


@pytest.fixture(scope="session")
def pampero_env() -> dict[str, str]:
    """The servers' environment; assembles and verifies the default model once."""
    env = pampero_environment()
    done = subprocess.run(
        [sys.executable, "-m", "pampero", "model-path"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"pampero model-path failed:\n{done.stderr[-4000:]}", pytrace=False)
    return env


Launcher = Callable[..., AbstractContextManager[Server]]


@pytest.fixture(scope="session")
def launch(tmp_path_factory: pytest.TempPathFactory, pampero_env: dict[str, str]) -> Launcher:
    """``with launch("--strict-params", env={"PAMPERO_X": "1"}, host=...) as server: ...``"""

    @contextmanager
    def run(
        *flags: str, env: dict[str, str] | None = None, host: str = "127.0.0.1"
    ) -> Iterator[Server]:
        log_dir = tmp_path_factory.mktemp("server")
        environment = {**pampero_env, **(env or {})}
        server = start_server(flags, env=environment, log_dir=log_dir, host=host)
        try:
            yield server
        finally:
            server.stop()

    return run


@pytest.fixture(scope="session")
def server(launch: Launcher) -> Iterator[Server]:
    with launch() as running:
        yield running


@pytest.fixture(scope="session")
def api(server: Server) -> Iterator[Api]:
    client = server.api()
    yield client
    client.close()


@pytest.fixture(scope="session")
def exact_server(launch: Launcher) -> Iterator[Server]:
    """A server for tests that compare two answers exactly (stream against non-stream, seed
    against seed). With the prefix cache a prompt is partly reused from KV that was computed
    in another batch shape, which moves logits in the third digit: enough to change a
    temperature-1 draw, or a greedy near-tie. Without it, an answer depends on the request
    alone."""
    with launch("--no-prefix-cache", "--kv-split") as running:
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
