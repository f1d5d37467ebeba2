"""A bounded soak: mixed traffic at a steady rate, then the server's resources back to baseline.

For ``--duration`` seconds, ``--rate`` requests per second of a fixed mix: plain chat, streamed
chat, a JSON schema, a tool call, a stream the client abandons after its first chunk, and bad
requests (broken JSON, an unknown model, an out-of-range parameter). Before and after (once the
server says nothing is running), it reads the server's resident memory, open file descriptors
and threads from ``/proc`` and ``pampero_requests_running`` from ``/metrics``.

    .venv/bin/python benchmarks/soak.py --duration 120 --rate 2 --write docs/benchmarks.md

``tests/e2e/test_soak.py`` runs ``soak`` for a minute against the shared test server and holds
it to what ``Figures.problems`` checks: no 5xx, nothing left running, descriptors and threads
back to baseline, bounded memory growth.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("<!-- soak:start -->", "<!-- soak:end -->")
CHAT = "/v1/chat/completions"
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
MIX = ("chat", "stream", "schema", "tool", "abandon", "bad-json", "bad-model", "bad-param")


@dataclass
class Snapshot:
    rss_mb: float
    fds: int
    threads: int
    running: float

    @classmethod
    def of(cls, pid: int, metrics_text: str) -> Snapshot:
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        running = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics_text.splitlines()
            if line.startswith("pampero_requests_running")
        )
        return cls(
            rss_mb=int(fields["VmRSS"].split()[0]) / 1024,
            fds=len(os.listdir(f"/proc/{pid}/fd")),
            threads=int(fields["Threads"]),
            running=running,
        )


@dataclass
class Figures:
    duration: float
    sent: int
    before: Snapshot
    after: Snapshot
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def problems(
        self, *, rss_growth_mb: float = 300, fd_slack: int = 8, thread_slack: int = 4
    ) -> list[str]:
        out = []
        for kind, counts in self.statuses.items():
            errors = {s: n for s, n in counts.items() if s >= 500}
            if errors:
                out.append(f"{kind}: server errors {errors}")
        if self.after.running:
            out.append(f"{self.after.running:g} requests still running")
        if self.after.fds > self.before.fds + fd_slack:
            out.append(f"file descriptors {self.before.fds} -> {self.after.fds}")
        if self.after.threads > self.before.threads + thread_slack:
            out.append(f"threads {self.before.threads} -> {self.after.threads}")
        if self.after.rss_mb - self.before.rss_mb > rss_growth_mb:
            out.append(f"resident memory {self.before.rss_mb:.0f} -> {self.after.rss_mb:.0f} MB")
        return out

    def render(self, setup: list[tuple[str, str]]) -> str:
        lines = ["| setting | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in setup)]
        lines += ["", "| request | sent | statuses | p50 s | max s |"]
        lines += ["| --- | ---: | --- | ---: | ---: |"]
        for kind in MIX:
            counts, times = self.statuses.get(kind), self.latencies.get(kind)
            if not counts or not times:
                continue
            shown = ", ".join(f"{s}×{n}" for s, n in sorted(counts.items()))
            lines.append(
                f"| {kind} | {sum(counts.values())} | {shown} | "
                f"{statistics.median(times):.2f} | {max(times):.2f} |"
            )
        b, a = self.before, self.after
        lines += [
            "",
            "| resource | before | after |",
            "| --- | ---: | ---: |",
            f"| resident memory (MB) | {b.rss_mb:.0f} | {a.rss_mb:.0f} |",
            f"| open file descriptors | {b.fds} | {a.fds} |",
            f"| threads | {b.threads} | {a.threads} |",
            f"| requests running | {b.running:g} | {a.running:g} |",
        ]
        return "\n".join(lines) + "\n"


def request_for(kind: str, model: str, i: int) -> tuple[dict[str, Any] | bytes, bool]:
    """(body, streamed) of one request of ``kind``."""
    chat = {
        "model": model,
        "messages": [{"role": "user", "content": f"Say one word about the number {i}."}],
        "max_tokens": 12,
        "temperature": 0.7,
    }
    if kind == "stream":
        return chat | {"stream": True, "stream_options": {"include_usage": True}}, True
    if kind == "abandon":
        return chat | {"stream": True, "max_tokens": 64}, True
    if kind == "schema":
        schema = {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}
        return chat | {"max_tokens": 40, "response_format": schema}, False
    if kind == "tool":
        return chat | {"tools": [TOOL], "tool_choice": "required", "max_tokens": 40}, False
    if kind == "bad-json":
        return b'{"model": "' + model.encode() + b'", "messages": [', False
    if kind == "bad-model":
        return chat | {"model": f"no-such-model-{i}"}, False
    if kind == "bad-param":
        return chat | {"temperature": -3}, False
    return chat, False


async def one(client: httpx.AsyncClient, kind: str, model: str, i: int, figures: Figures) -> None:
    body, streamed = request_for(kind, model, i)
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    headers = {"content-type": "application/json"}
    try:
        if streamed:
            async with client.stream("POST", CHAT, headers=headers, **kwargs) as response:
                async for _ in response.aiter_lines():
                    if kind == "abandon":
                        break  # the client leaves after the first chunk
                status = response.status_code
        else:
            status = (await client.post(CHAT, headers=headers, **kwargs)).status_code
    except httpx.HTTPError:
        status = 599  # no answer at all counts as a server failure
    figures.statuses[kind][status] += 1
    figures.latencies[kind].append(time.perf_counter() - started)


async def settle(client: httpx.AsyncClient, pid: int, timeout: float = 60) -> Snapshot:
    deadline = time.monotonic() + timeout
    while True:
        snapshot = Snapshot.of(pid, (await client.get("/metrics")).text)
        if not snapshot.running or time.monotonic() > deadline:
            return snapshot
        await asyncio.sleep(0.5)


async def soak(base_url: str, pid: int, model: str, duration: float, rate: float) -> Figures:
    """Drive the mix at ``rate`` per second for ``duration`` seconds; resources before/after."""
    async with httpx.AsyncClient(base_url=base_url, timeout=300, trust_env=False) as client:
        await client.post(CHAT, json=request_for("chat", model, 0)[0])  # warm
        before = await settle(client, pid)
        figures = Figures(duration, 0, before, before)
        kinds = itertools.cycle(random.Random(0).sample(MIX * 4, len(MIX) * 4))
        tasks = []
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < duration:
            tasks.append(asyncio.ensure_future(one(client, next(kinds), model, i, figures)))
            i += 1
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        await asyncio.gather(*tasks)
        figures.sent = i
        figures.after = await settle(client, pid)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120)
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--write", type=Path, help="rewrite this markdown file's section")
    args = parser.parse_args(argv)
    base_url = f"http://127.0.0.1:{args.port}"
    command = [sys.executable, "-m", "pampero", "serve", "--config", "configs/default.yaml",
               "--port", str(args.port)]  # fmt: skip
    log = REPO_ROOT / ".bench" / "soak-server.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        try:
            model = wait_for(base_url)
            figures = asyncio.run(soak(base_url, proc.pid, model, args.duration, args.rate))
        finally:
            proc.terminate()
            proc.wait(60)
    setup = [
        ("command", f"`benchmarks/soak.py {' '.join(argv or sys.argv[1:])}`"),
        ("date", time.strftime("%Y-%m-%d")),
        (
            "requests",
            f"{figures.sent} in {args.duration:g} s ({args.rate:g}/s), mix: {', '.join(MIX)}",
        ),
        ("load average at the end", " ".join(f"{x:.1f}" for x in os.getloadavg())),
        ("verdict", "; ".join(figures.problems()) or "back to baseline, no 5xx"),
    ]
    report = figures.render(setup)
    print(report)
    if args.write:
        from bench_serving import replace_section

        document = args.write.read_text() if args.write.exists() else None
        args.write.write_text(replace_section(document, report, markers=MARKERS))
    return 1 if figures.problems() else 0


def wait_for(base_url: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            models = httpx.get(f"{base_url}/v1/models", timeout=5).json()
            return str(models["data"][0]["id"])
        except (httpx.HTTPError, json.JSONDecodeError, KeyError):
            time.sleep(1)
    raise SystemExit(f"the server at {base_url} did not start")


if __name__ == "__main__":
    sys.exit(main())
