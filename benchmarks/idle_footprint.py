"""What an idle ``pampero serve`` costs: venv size, import time, start-up time, resident memory.

Starts ``VENV/bin/python -X importtime VENV/bin/pampero serve --config configs/default.yaml`` on
a free port, waits for ``/health``, lets it settle, then reads ``VmRSS`` of the server and of its
child processes (the constraint compile workers and their fork server) from ``/proc``, and stops
it. The import figures come from ``-X importtime``: every module imported up to that moment,
start-up's lazy imports included, so a heavy library pulled in by accident shows by name.

Standard library only, so any Python runs it against any venv::

    python3 benchmarks/idle_footprint.py .venv            # one markdown table row per venv
    python3 benchmarks/idle_footprint.py /tmp/lean/.venv .venv

``--llama-server BIN`` adds a row for native llama-server (``benchmarks/bench_native.py`` builds
it) on the same model file, threads and total context as ``configs/default.yaml`` gives pampero
(``-c n_ctx*max_seqs -np max_seqs``), read the same way after the same settle time.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "xgrammar", "outlines_core", "lmformatenforcer", "triton")
_IMPORT = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


@dataclass
class Footprint:
    venv_mb: int
    modules: int
    import_s: float
    start_s: float
    server_rss_mb: int
    server_file_mb: int  # of which file-backed: mostly the model's GGUF, mapped by llama.cpp
    children_rss_mb: int
    heavy: list[str]
    top: list[tuple[str, float]]


def du_mb(path: Path) -> int:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def rss_mb(pid: int, field: str = "VmRSS") -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) // 1024 if found else 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path(f"/proc/{pid}/task").iterdir():
        kids = (entry / "children").read_text().split()
        for kid in map(int, kids):
            found += [kid, *children(kid)]
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def imports(log: str) -> tuple[int, float, list[tuple[str, float]]]:
    """Module count, top-level cumulative import time, and the packages that cost the most."""
    count, total, by_package = 0, 0, Counter[str]()
    for line in log.splitlines():
        found = _IMPORT.match(line)
        if found is None:
            continue
        count += 1
        by_package[found.group(4).split(".")[0]] += int(found.group(1))
        if len(found.group(3)) == 1:
            total += int(found.group(2))
    top = [(name, us / 1e6) for name, us in by_package.most_common(6)]
    return count, total / 1e6, top


def measure(venv: Path, settle_s: float) -> Footprint:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile("w+") as log:
        started = time.monotonic()
        # The venv's own script: ``-m`` would import pampero from the working directory.
        command = [venv / "bin" / "python", "-X", "importtime", venv / "bin" / "pampero", "serve",
                   "--config", ROOT / "configs" / "default.yaml", "--port", port]  # fmt: skip
        server = subprocess.Popen(
            [str(part) for part in command],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_healthy(port, server)
            start_s = time.monotonic() - started
            time.sleep(settle_s)
            server_rss = rss_mb(server.pid)
            server_file = rss_mb(server.pid, "RssFile")
            kids_rss = sum(rss_mb(kid) for kid in children(server.pid))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        log.seek(0)
        text = log.read()
    count, import_s, top = imports(text)
    names = {m.group(4).split(".")[0] for m in map(_IMPORT.match, text.splitlines()) if m}
    return Footprint(
        venv_mb=du_mb(venv),
        modules=count,
        import_s=import_s,
        start_s=start_s,
        server_rss_mb=server_rss,
        server_file_mb=server_file,
        children_rss_mb=kids_rss,
        heavy=[h for h in HEAVY if h in names],
        top=top,
    )


def measure_llama_server(binary: Path, model: Path, settle_s: float) -> tuple[float, int, int]:
    """Start to /health, RSS and its file-backed part of an idle llama-server sized like the
    default config: 8 slots of 4096 tokens (pampero's defaults), all threads."""
    port = free_port()
    threads = os.cpu_count() or 1
    command = [binary, "-m", model, "-c", 4096 * 8, "-np", 8, "-t", threads, "-tb", threads,
               "--host", "127.0.0.1", "--port", port]  # fmt: skip
    with tempfile.TemporaryFile("w+") as log:
        started = time.monotonic()
        server = subprocess.Popen(
            [str(part) for part in command], stdout=log, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_healthy(port, server)
            start_s = time.monotonic() - started
            time.sleep(settle_s)
            return start_s, rss_mb(server.pid), rss_mb(server.pid, "RssFile")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def default_model_file(venv: Path) -> Path:
    """Where the default model is assembled (the first venv's pampero says)."""
    code = (
        "from pampero.assets import ensure_default_model; from pampero.settings import "
        "default_home; print(ensure_default_model(default_home()))"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True,
                         text=True, check=True, cwd=ROOT)  # fmt: skip
    return Path(out.stdout.strip().splitlines()[-1])


def wait_healthy(port: int, server: subprocess.Popen[str], limit_s: float = 300) -> None:
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become healthy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venvs", nargs="+", type=Path)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds idle before reading")
    parser.add_argument("--llama-server", type=Path, help="also measure this llama-server binary")
    args = parser.parse_args()
    print(
        "| venv | size | modules imported | import time | start to /health "
        "| server RSS (file-backed) | workers' RSS | heavy libraries imported "
        "| costliest imports |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for venv in args.venvs:
        f = measure(venv.resolve(), args.settle)
        top = ", ".join(f"{name} {s:.2f}s" for name, s in f.top[:4])
        print(
            f"| `{venv}` | {f.venv_mb} MB | {f.modules} | {f.import_s:.2f} s | {f.start_s:.1f} s "
            f"| {f.server_rss_mb} MB ({f.server_file_mb} MB) | {f.children_rss_mb} MB "
            f"| {', '.join(f.heavy) or 'none'} "
            f"| {top} |"
        )
    if args.llama_server:
        model = default_model_file(args.venvs[0].resolve())
        start_s, rss, file_rss = measure_llama_server(args.llama_server, model, args.settle)
        print(
            f"| `{args.llama_server.name}` (native) | | | | {start_s:.1f} s "
            f"| {rss} MB ({file_rss} MB) | | | |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
