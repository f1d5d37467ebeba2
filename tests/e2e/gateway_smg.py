"""SGLang's model gateway (``smg``, a Rust binary from the ``smg`` wheel) as a test process.

``start_smg`` runs ``smg launch`` on a free loopback port in front of the given worker URLs
and waits until it reports every worker healthy. Its own Prometheus listener (on 0.0.0.0:29000
unless told otherwise) gets a free loopback port too, so several gateways can run at once.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.e2e.harness import free_port

STARTUP_TIMEOUT = 60.0


def smg_binary() -> str | None:
    """The ``smg`` executable beside this interpreter (a venv's bin), else on ``PATH``."""
    beside = Path(sys.executable).parent / "smg"
    return str(beside) if beside.exists() else shutil.which("smg")


class Gateway:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path
        self.started = time.monotonic()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def smg_command(binary: str, port: int, workers: Sequence[str], *flags: str) -> list[str]:
    return [
        binary, "launch", "--host", "127.0.0.1", "--port", str(port),
        "--worker-urls", *workers,
        "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
        "--shutdown-grace-period-secs", "1", "--log-level", "info",
        *flags,
    ]  # fmt: skip


def start_smg(binary: str, workers: Sequence[str], log_dir: Path, *flags: str) -> Gateway:
    """``smg launch`` in front of ``workers``, ready once ``/readiness`` counts them all. A
    gateway that exits at once (another process took a port between our pick and its bind)
    is started again on other ports, twice at most."""
    for _attempt in range(3):
        port = free_port()
        log_path = log_dir / f"smg-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                smg_command(binary, port, workers, *flags), stdout=log, stderr=subprocess.STDOUT
            )
        gateway = Gateway(process, f"http://127.0.0.1:{port}", log_path)
        if _wait_ready(gateway, len(workers)):
            return gateway
        exited_at_once = process.poll() is not None and time.monotonic() - gateway.started < 10
        gateway.stop()
        if not exited_at_once:
            break
    raise RuntimeError(f"smg did not become ready; its log:\n{gateway.log()[-6000:]}")


def _wait_ready(gateway: Gateway, workers: int) -> bool:
    deadline = gateway.started + STARTUP_TIMEOUT
    while time.monotonic() < deadline and gateway.process.poll() is None:
        try:
            ready = httpx.get(gateway.url + "/readiness", timeout=2)
            if ready.status_code == 200 and ready.json().get("healthy_workers") == workers:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False
