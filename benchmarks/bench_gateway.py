"""What the gateway adds: an instant upstream on loopback, measured directly, through pampero
and through LiteLLM's proxy, in one run.

    .venv/bin/python benchmarks/bench_gateway.py [--duration 8] [--write docs/benchmarks.md]

Processes: the upstream (a raw asyncio server on uvloop answering ``/v1/chat/completions``
instantly, whole or streamed: role, three content chunks, finish, usage, ``[DONE]``), a pure
pampero gateway (``pampero serve --upstream up=URL``), and LiteLLM's proxy
(``litellm --config``, one worker) from its own virtual environment (``--litellm``; made with
``python -m venv /work/venvs/litellm && /work/venvs/litellm/bin/pip install 'litellm[proxy]'``,
skipped if absent). The load generator runs here, on aiohttp over keep-alive connections.

Figures, for whole answers and streams:

- **added p50 / p99 at R req/s**: an open loop sends R requests per second for ``--duration``
  seconds; latency runs from each request's *scheduled* send time to its last byte (a target
  that falls behind pays for it); added = the target's percentile minus the direct one's.
- **saturation req/s**: ``--concurrency`` closed-loop clients for ``--duration`` seconds.
- **CPU us/request**: the proxy process's CPU time (user + system, ``/proc/PID/stat``) over the
  open loops at the highest rate, per request: unlike latency, barely moved by other load on a
  shared machine, so it compares two builds where latency cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
MODEL = "m"
REQUEST = orjson.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "Hola"}], "max_tokens": 16}
)
STREAM_REQUEST = orjson.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "Hola"}], "max_tokens": 16,
     "stream": True}
)  # fmt: skip


# -- the instant upstream --------------------------------------------------------------------


def _answer() -> bytes:
    body = orjson.dumps(
        {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hola, ¿qué tal?"},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
        }
    )  # fmt: skip
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        % len(body)
        + body
    )


def _stream() -> bytes:
    def chunk(delta: dict[str, object], finish: str | None = None, usage: bool = False) -> bytes:
        data: dict[str, object] = {
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }  # fmt: skip
        if usage:
            data["choices"] = []
            data["usage"] = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
        return b"data: " + orjson.dumps(data) + b"\n\n"

    events = [
        chunk({"role": "assistant", "content": ""}),
        *(chunk({"content": word}) for word in ("Hola", ", ¿qué", " tal?")),
        chunk({}, "stop"),
        chunk({}, usage=True),
        b"data: [DONE]\n\n",
    ]
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    return head + body


# Both proxies require a key (LiteLLM refuses to start without one); the upstream ignores it.
KEY = "sk-bench-gateway-0123456789abcdef"
HEADERS = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}

MODELS = orjson.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


async def _serve_upstream(port: int) -> None:
    answer, stream = _answer(), _stream()
    models = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        % len(MODELS)
        + MODELS
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length:\s*(\d+)", head)
                body = await reader.readexactly(int(match.group(1))) if match else b""
                if head.startswith(b"GET"):
                    writer.write(models)
                else:
                    writer.write(stream if b'"stream":true' in body.replace(b" ", b"") else answer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# -- load --------------------------------------------------------------------------------------


async def _one(session: object, url: str, body: bytes) -> None:
    import aiohttp

    assert isinstance(session, aiohttp.ClientSession)
    async with session.post(url, data=body, headers=HEADERS) as r:
        data = await r.read()
        if r.status != 200 or not data:
            raise RuntimeError(f"{url}: HTTP {r.status}: {data[:200]!r}")


async def open_loop(url: str, body: bytes, rate: float, duration: float) -> list[float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(20):  # warm the pool and the target
            await _one(session, url, body)
        # perf_counter, not loop.time(): uvloop's clock has millisecond steps.
        start = time.perf_counter() + 0.05
        total = int(rate * duration)

        async def fire(due: float) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                await asyncio.wait_for(_one(session, url, body), 30)
                latencies.append(time.perf_counter() - due)
            except Exception:
                errors += 1

        await asyncio.gather(*(fire(start + i / rate) for i in range(total)))
    if errors:
        print(f"  {errors} errors", file=sys.stderr)
    return sorted(latencies)


async def closed_loop(url: str, body: bytes, concurrency: int, duration: float) -> float:
    import aiohttp

    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for _ in range(20):
            await _one(session, url, body)
        end = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                try:
                    await asyncio.wait_for(_one(session, url, body), 30)
                    done += 1
                except Exception:
                    await asyncio.sleep(0.01)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def targets(upstream: str, litellm: str | None, work: Path) -> tuple[dict[str, str], list]:
    """name -> chat URL, and the processes to stop (the first one pampero, then LiteLLM)."""
    urls = {"direct": upstream + "/v1/chat/completions"}
    processes = []
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes.append(
        start(
            [sys.executable, "-m", "pampero", "serve", "--upstream", f"up={upstream}",
             "--port", str(port), "--log-level", "warning", "--api-key", KEY],
            work / "pampero.log", env,
        )
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/health")
    urls["pampero"] = f"http://127.0.0.1:{port}/v1/chat/completions"
    if litellm:
        port = free_port()
        config = work / "litellm.yaml"
        config.write_text(
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n"
            f"      api_base: {upstream}/v1\n      api_key: none\n"
            "litellm_settings:\n  drop_params: false\n  telemetry: false\n"
        )
        processes.append(
            start(
                [litellm, "--config", str(config), "--port", str(port), "--num_workers", "1"],
                work / "litellm.log",
                {
                    **os.environ,
                    "LITELLM_LOG": "ERROR",
                    "LITELLM_TELEMETRY": "False",
                    "LITELLM_MASTER_KEY": KEY,
                },
            )
        )
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=300)
        urls["litellm"] = f"http://127.0.0.1:{port}/v1/chat/completions"
    return urls, processes


def run(args: argparse.Namespace) -> str:
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    port = free_port()
    upstream_process = start(
        [sys.executable, __file__, "--serve-upstream", str(port)], work / "upstream.log"
    )
    upstream = f"http://127.0.0.1:{port}"
    wait_http(upstream + "/v1/models")
    litellm = args.litellm if args.litellm and Path(args.litellm).exists() else None
    urls, processes = targets(upstream, litellm, work)
    pids = {name: p.pid for name, p in zip(("pampero", "litellm"), processes, strict=False)}
    rows: list[str] = []
    load = os.getloadavg()
    try:
        for label, body in (("whole", REQUEST), ("stream", STREAM_REQUEST)):
            base: dict[float, list[float]] = {}
            for name, url in urls.items():
                cells = []
                pid = pids.get(name)
                cpu: dict[float, float] = {}  # rate -> CPU us per request of the proxy
                for rate in args.rates:
                    before = cpu_seconds(pid) if pid else 0.0
                    latencies = asyncio.run(open_loop(url, body, rate, args.duration))
                    if pid and latencies:  # (its 20 warm-up requests included)
                        cpu[rate] = (cpu_seconds(pid) - before) / len(latencies) * 1e6
                    if name == "direct":
                        base[rate] = latencies
                        cells.append(
                            f"{pct(latencies, 0.5) * 1e3:.2f} / {pct(latencies, 0.99) * 1e3:.2f}"
                        )
                    else:
                        p50 = (pct(latencies, 0.5) - pct(base[rate], 0.5)) * 1e3
                        p99 = (pct(latencies, 0.99) - pct(base[rate], 0.99)) * 1e3
                        cells.append(f"+{p50:.2f} / +{p99:.2f}")
                    print(f"{label} {name} {rate}/s: p50 {pct(latencies, .5) * 1e3:.2f} ms "
                          f"p99 {pct(latencies, .99) * 1e3:.2f} ms", file=sys.stderr)  # fmt: skip
                saturation = asyncio.run(closed_loop(url, body, args.concurrency, args.duration))
                print(f"{label} {name} saturation {saturation:.0f}/s", file=sys.stderr)
                top = max(args.rates)
                per_request = f"{cpu[top]:.0f}" if top in cpu else "-"
                rows.append(
                    f"| {label} | {name} | " + " | ".join(cells)
                    + f" | {saturation:.0f} | {per_request} |"
                )  # fmt: skip
    finally:
        for process in processes:
            stop(process)
        stop(upstream_process)
    after = os.getloadavg()
    rates = " | ".join(f"p50 / p99 at {r:g} req/s (ms)" for r in args.rates)
    top = max(args.rates)
    header = (
        f"| answer | target | {rates} | saturation (req/s, {args.concurrency} clients) "
        f"| CPU us/request at {top:g} req/s |"
    )
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.duration:g} s per "
        f"figure; load average before {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, after "
        f"{after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f} (2 cores). Direct rows are absolute; "
        "the others are what they add to the direct figure at the same rate.",
        "",
        header,
        "| --- | --- | " + " | ".join("---:" for _ in args.rates) + " | ---: | ---: |",
        *rows,
    ]
    return "\n".join(lines)


def write(path: Path, table: str) -> None:
    text = path.read_text()
    start_mark, end_mark = "<!-- bench_gateway:start -->", "<!-- bench_gateway:end -->"
    block = f"{start_mark}\n{table}\n{end_mark}"
    if start_mark in text:
        text = re.sub(re.escape(start_mark) + ".*?" + re.escape(end_mark), block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument(
        "--rates", type=lambda s: [float(x) for x in s.split(",")], default=[50.0, 200.0]
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--litellm", default=shutil.which("litellm", path="/work/venvs/litellm/bin")
    )
    parser.add_argument("--write", type=Path)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        import uvloop

        uvloop.run(_serve_upstream(args.serve_upstream))
        return 0
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    table = run(args)
    print(table)
    if args.write:
        write(args.write, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
