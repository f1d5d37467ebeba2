"""Fixtures every test directory may use: real ``pampero serve`` processes.

``launch`` starts a short-lived server with any flags (``with launch("--strict-params") as s``);
``server`` is one session-wide process serving ``configs/default.yaml`` (the default model with
the seed documents' model ids as aliases) on a free loopback port, and ``api`` talks to it. They
live here, not in ``tests/e2e/``, so that other suites (the vision tests' text-only refusal) share
the same session server instead of starting another. Helpers live in ``tests/e2e/harness.py``.

The model comes from ``PAMPERO_HOME`` if set, else from pampero's default home, where
``scripts/install.sh`` assembles it; ``pampero model-path`` runs once first, so a missing model
is assembled before any server's start-up clock runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# Helper modules whose asserts should explain themselves like a test's (before they are imported).
pytest.register_assert_rewrite("tests.e2e.harness", "tests.e2e.sse", "tests.vision.serve_contract")

from tests.e2e.harness import (  # noqa: E402
    Api,
    Launcher,
    Server,
    pampero_environment,
    secrets_in_logs,
    start_server,
)


@pytest.fixture(scope="session", autouse=True)
def no_secrets_in_server_logs() -> Iterator[None]:
    """After the whole session (every server at debug level unless a test chose otherwise), no
    server log holds a key it was given, a bearer token or a base64 payload."""
    yield
    leaks = secrets_in_logs()
    if leaks:
        pytest.fail("secrets in server logs:\n" + "\n".join(leaks[:20]), pytrace=False)


@pytest.fixture(scope="session")
def assembled_model() -> tuple[dict[str, str], str]:
    """The servers' environment and the default model's file, assembled and verified once."""
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
    return env, done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def pampero_env(assembled_model: tuple[dict[str, str], str]) -> dict[str, str]:
    """The servers' environment (the default model assembled first)."""
    return assembled_model[0]


@pytest.fixture(scope="session")
def default_gguf(assembled_model: tuple[dict[str, str], str]) -> str:
    """The path of the default model's GGUF file."""
    return assembled_model[1]


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
