"""End-to-end fixtures: real ``pampero serve`` processes on the real default model.

``server`` is one session-wide process serving ``configs/default.yaml`` (the default model with
the seed documents' model ids as aliases) on a free loopback port; ``api`` talks to it. Tests
that need other flags start a short-lived one with ``launch("--strict-params")``;
``keyed_server`` is a session-wide one that requires the bearer key ``api_key``.

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
    """``with launch("--strict-params", env={"PAMPERO_X": "1"}) as server: ...``"""

    @contextmanager
    def run(*flags: str, env: dict[str, str] | None = None) -> Iterator[Server]:
        log_dir = tmp_path_factory.mktemp("server")
        server = start_server(flags, env={**pampero_env, **(env or {})}, log_dir=log_dir)
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
def api_key() -> str:
    return "sk-e2e-" + secrets.token_hex(8)


@pytest.fixture(scope="session")
def keyed_server(launch: Launcher, api_key: str) -> Iterator[Server]:
    with launch("--api-key", api_key) as running:
        yield running
