"""Running a docs page's shell commands as written: its ``pampero serve`` set-up lines as
servers, its ``pampero keys`` and ``curl`` lines as commands.

The only change made to a command's text is the port: a page's servers listen on 8000, 8001,
8002, ... (up to 8009) of ``127.0.0.1``, which ``Ports`` maps to free ports (in ``--port N``,
``127.0.0.1:N`` and ``localhost:N``). Commands run under ``bash`` from the repository root
(the pages' commands assume a clone: ``configs/default.yaml``), with this interpreter's
``bin`` first on ``PATH``, so ``pampero`` is the one under test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import REPO, STARTUP_TIMEOUT, Server, SnippetRun, free_port

PORT = re.compile(r"(?:(?<=--port )|(?<=127\.0\.0\.1:)|(?<=localhost:))800\d\b")
SERVE = re.compile(r"^((?:\w+=\S* )*)pampero serve ")
DEFAULT_PORT = 8000  # where ``pampero serve`` listens when a command names no port


class Ports:
    """The page's ports (8000, 8001, ...) mapped to free loopback ports, each on first sight."""

    def __init__(self) -> None:
        self.mapped: dict[int, int] = {}

    def __getitem__(self, documented: int) -> int:
        if documented not in self.mapped:
            self.mapped[documented] = free_port()
        return self.mapped[documented]

    def url(self, documented: int = DEFAULT_PORT) -> str:
        return f"http://127.0.0.1:{self[documented]}"

    def localise(self, text: str) -> str:
        return PORT.sub(lambda m: str(self[int(m.group(0))]), text)


def environment(base: Mapping[str, str], **extra: str) -> dict[str, str]:
    """``base`` with this interpreter's ``bin`` first on ``PATH`` and loopback unproxied."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', os.defpath)}"
    loopback = "127.0.0.1,localhost"
    return {**base, "PATH": path, "NO_PROXY": loopback, "no_proxy": loopback, **extra}


def run(command: str, ports: Ports, env: Mapping[str, str], timeout: float = 300) -> SnippetRun:
    """One documented command under ``bash``, its ports localised."""
    done = subprocess.run(
        ["bash", "-c", ports.localise(command)],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return SnippetRun(done.stdout, done.stderr, done.returncode)


def serve_port(command: str) -> int:
    """The port a documented ``pampero serve`` command listens on."""
    found = re.search(r"--port (\d+)", command)
    return int(found.group(1)) if found else DEFAULT_PORT


@contextmanager
def serving(
    commands: list[str], ports: Ports, env: Mapping[str, str], log_dir: Path
) -> Iterator[list[Server]]:
    """Start a page's ``pampero serve`` commands, in order, each as written (its ports
    localised; one without ``--port`` gets the default port's). A command ending in ``&`` runs
    alongside the next ones; any other waits until every server started so far answers
    ``/health``. Stopped on exit."""
    with ExitStack() as stack:
        servers: list[Server] = []
        pending: list[tuple[Server, str]] = []
        for written in commands:
            command = re.sub(r"\s+#.*$", "", written)  # a trailing comment
            found = SERVE.match(command)
            assert found is not None, command
            line = command.removesuffix("&").rstrip()
            port = serve_port(line)
            if "--port" not in line:
                line += f" --port {port}"  # the default, made explicit so it can be mapped
            log_path = log_dir / f"serve-{port}.log"
            assignments, rest = line[: found.end(1)], line[found.end(1) :]
            with log_path.open("wb") as log:
                process = subprocess.Popen(  # exec: the server is the process signalled
                    ["bash", "-c", ports.localise(f"{assignments}exec {rest}")],
                    env=dict(env),
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            server = Server(process, ports.url(port), log_path)
            stack.callback(server.stop)
            servers.append(server)
            pending.append((server, written))
            if not command.endswith("&"):
                for started, text in pending:
                    wait_healthy(started, text)
                pending.clear()
        for started, text in pending:
            wait_healthy(started, text)
        yield servers


def wait_healthy(server: Server, command: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(
        f"{command}: no healthy server within {STARTUP_TIMEOUT:.0f} s; its log:\n"
        f"{server.log()[-6000:]}",
        pytrace=False,
    )
