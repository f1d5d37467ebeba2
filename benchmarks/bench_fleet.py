"""Fleet benchmark: three pampero nodes behind a router, one routing policy per column.

For each column (a gateway and one of its routing policies) the benchmark starts fresh
``pampero serve`` nodes (one thread each) on loopback, the gateway in front of them, and plays
the same multi-turn chat workload through it: ``--users`` clients at once, each running
conversations one after the other, every turn resending the whole history. Then it stops
everything and goes on to the next column, so no column inherits another's caches::

    .venv/bin/python benchmarks/bench_fleet.py --write docs/benchmarks.md

Figures per column:

- cached-token ratio: ``usage.prompt_tokens_details.cached_tokens`` over ``prompt_tokens``,
  summed over every request: how much prefill the nodes' prefix caches saved.
- TTFT p50/p99: from sending a request to its first non-empty content delta.
- throughput: completion tokens of all requests over the wall time of the workload.
- requests per node: each node's own count of answered chat requests.

Gateways are launchers in ``GATEWAYS``: ``smg`` (SGLang's model gateway, the ``smg`` wheel)
and ``pampero`` (``pampero serve`` with the nodes as upstreams and no local model), each with
its own routing policies (``GATEWAY_POLICIES``). ``--routing`` picks columns: a plain name is a
column for every ``--gateway``, ``GATEWAY:NAME`` one for that gateway alone; without it, every
policy of every gateway. Side by side, the issue's columns::

    .venv/bin/python benchmarks/bench_fleet.py --gateway smg --gateway pampero \
        --routing smg:round_robin,smg:cache_aware,pampero:least-outstanding,pampero:prefix
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = REPO_ROOT / ".bench"
SECTION_START = "<!-- bench_fleet:start -->"
SECTION_END = "<!-- bench_fleet:end -->"
SMG_POLICIES = ("round_robin", "random", "power_of_two", "least_load", "prefix_hash", "cache_aware")
PAMPERO_POLICIES = ("least-outstanding", "prefix", "session", "weighted")
TAIL_LINES = 40


class BenchError(Exception):
    """The benchmark cannot go on: a process failed to start, or a request failed."""


# ---------------------------------------------------------------------------------------------
# The workload (pure)


def document(conversation: int, nonce: str, facts: int) -> str:
    """The opening message of one conversation: a report no other conversation shares."""
    rows = " ".join(
        f"Station {conversation}-{i} logged {(conversation * 31 + i * 17) % 97} units at "
        f"{(i * 7) % 24:02d}:00."
        for i in range(facts)
    )
    return f"Report {nonce}-{conversation}. {rows} Summarise the report in one sentence."


def follow_up(turn: int) -> str:
    return f"Question {turn}: which station logged the most units, and when?"


@dataclass(frozen=True)
class Workload:
    conversations: int
    turns: int
    users: int
    facts: int
    max_tokens: int


@dataclass
class Sample:
    """One request as the client saw it."""

    ttft: float
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int


@dataclass
class ColumnResult:
    gateway: str
    routing: str
    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0
    per_node: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.gateway} {self.routing}"


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values``.

    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 99)
    (2, 4)
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def column_figures(result: ColumnResult) -> dict[str, str]:
    samples = result.samples
    prompt = sum(s.prompt_tokens for s in samples)
    cached = sum(s.cached_tokens for s in samples)
    ttfts = [s.ttft * 1000 for s in samples]
    completion = sum(s.completion_tokens for s in samples)
    return {
        "cached-token ratio": f"{cached / prompt:.2f}" if prompt else "n/a",
        "TTFT p50 (ms)": f"{percentile(ttfts, 50):.0f}",
        "TTFT p99 (ms)": f"{percentile(ttfts, 99):.0f}",
        "throughput (completion tok/s)": f"{completion / result.wall:.1f}" if result.wall else "",
        "requests": str(len(samples)),
        "requests per node": "/".join(str(n) for n in result.per_node),
        "wall time (s)": f"{result.wall:.0f}",
    }


def render_table(results: Sequence[ColumnResult]) -> str:
    figures = [column_figures(r) for r in results]
    lines = [
        "| metric | " + " | ".join(r.name for r in results) + " |",
        "| --- |" + " ---: |" * len(results),
    ]
    for row in figures[0]:
        lines.append(f"| {row} | " + " | ".join(f[row] for f in figures) + " |")
    return "\n".join(lines)


def replace_section(document_text: str, body: str) -> str:
    """``document_text`` with the text between this benchmark's markers replaced by ``body``
    (appended with its markers when they are missing)."""
    section = f"{SECTION_START}\n{body.strip()}\n{SECTION_END}"
    start, end = document_text.find(SECTION_START), document_text.find(SECTION_END)
    if start == -1 or end < start:
        return f"{document_text.rstrip()}\n\n{section}\n"
    return document_text[:start] + section + document_text[end + len(SECTION_END) :]


def parse_columns(gateways: Sequence[str], routings: Sequence[str]) -> list[tuple[str, str]]:
    """``--gateway`` × ``--routing`` as (gateway, routing) columns, each gateway known. A
    routing ``GATEWAY:NAME`` is a column of that gateway alone; no routing at all, every
    policy of each gateway.

    >>> parse_columns(["smg"], ["round_robin", "cache_aware"])
    [('smg', 'round_robin'), ('smg', 'cache_aware')]
    >>> parse_columns(["smg", "pampero"], ["smg:cache_aware", "pampero:prefix"])
    [('smg', 'cache_aware'), ('pampero', 'prefix')]
    """
    unknown = [g for g in gateways if g not in GATEWAYS]
    if unknown:
        raise BenchError(f"unknown gateway {unknown[0]!r}; known: {', '.join(sorted(GATEWAYS))}")
    if not routings:
        return [(g, r) for g in gateways for r in GATEWAY_POLICIES[g]]
    columns = []
    for gateway in gateways:
        for routing in routings:
            owner, sep, name = routing.rpartition(":")
            if not sep:
                columns.append((gateway, routing))
            elif owner not in GATEWAYS:
                raise BenchError(f"--routing {routing!r} names no known gateway")
            elif owner == gateway:
                columns.append((gateway, name))
    return columns


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-TAIL_LINES:])


class Process:
    """One child process, its output in ``log``; ready once ``ready()`` holds."""

    def __init__(self, argv: list[str], log: Path, ready: Callable[[], bool]) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.argv, self.log, self.ready = argv, log, ready
        with log.open("wb") as sink:
            # Its own session, so a Ctrl-C on the benchmark reaches it only through stop().
            self.proc = subprocess.Popen(
                argv, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True
            )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(
                    f"{Path(self.argv[0]).name} did not get ready; "
                    f"last lines of {self.log}:\n{log_tail(self.log)}"
                )
            time.sleep(0.25)

    def stop(self, grace: float = 20.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def processes(specs: Sequence[tuple[list[str], Path, Callable[[], bool]]]) -> Iterator[None]:
    """Start every process at once, wait until all are ready, stop them when the block ends."""
    started: list[Process] = []
    try:
        for argv, log, ready in specs:
            started.append(Process(argv, log, ready))
        for child in started:
            child.wait_ready(timeout=180)
        yield
    finally:
        for child in started:
            child.stop()


def answers(url: str, path: str, check: Callable[[httpx.Response], bool] = lambda r: True) -> bool:
    with contextlib.suppress(httpx.TransportError, ValueError):
        response = httpx.get(url + path, timeout=2)
        return response.status_code == 200 and check(response)
    return False


@contextlib.contextmanager
def pampero_nodes(count: int, threads: int, extra: Sequence[str], tag: str) -> Iterator[list[str]]:
    """``count`` fresh nodes serving configs/default.yaml (the default model); their URLs."""
    specs, urls = [], []
    for index in range(count):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [
            sys.executable, "-m", "pampero", "serve", "--config", "configs/default.yaml",
            "--port", str(port), "--threads", str(threads), *extra,
        ]  # fmt: skip
        log = LOG_DIR / f"fleet-{tag}-node{index}.log"
        specs.append((argv, log, lambda url=url: answers(url, "/health")))
        urls.append(url)
    with processes(specs):
        yield urls


def smg_binary() -> str:
    beside = Path(sys.executable).parent / "smg"
    found = str(beside) if beside.exists() else shutil.which("smg")
    if found is None:
        raise BenchError("SGLang's model gateway is not installed: pip install 'pampero[fleet]'")
    return found


@contextlib.contextmanager
def smg_gateway(workers: Sequence[str], routing: str, tag: str) -> Iterator[str]:
    """``smg launch --policy ROUTING`` in front of ``workers``, with smg's other defaults."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        smg_binary(), "launch", "--host", "127.0.0.1", "--port", str(port),
        "--worker-urls", *workers, "--policy", routing,
        "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
        "--shutdown-grace-period-secs", "1", "--log-level", "warn",
    ]  # fmt: skip

    def ready() -> bool:
        return answers(url, "/readiness", lambda r: r.json().get("healthy_workers") == len(workers))

    with processes([(argv, LOG_DIR / f"fleet-{tag}-smg.log", ready)]):
        yield url


@contextlib.contextmanager
def pampero_gateway(workers: Sequence[str], routing: str, tag: str) -> Iterator[str]:
    """``pampero serve`` with ``workers`` as upstreams (``node0``, ``node1``, ...), no local
    model, ``--routing ROUTING`` and its other defaults; ready once its model lists them all."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = LOG_DIR / f"fleet-{tag}-gateway.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    upstreams = [{"name": f"node{i}", "url": worker} for i, worker in enumerate(workers)]
    config.write_text(json.dumps({"upstreams": upstreams, "routing": routing}))  # YAML is JSON
    argv = [
        sys.executable, "-m", "pampero", "serve", "--config", str(config),
        "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip

    def ready() -> bool:
        def lists_all(response: httpx.Response) -> bool:
            models = response.json().get("data") or [{}]
            return len(models[0].get("providers") or ()) == len(workers)

        return answers(url, "/v1/models", lists_all)

    with processes([(argv, LOG_DIR / f"fleet-{tag}-gateway.log", ready)]):
        yield url


# Gateway name -> launcher: (worker URLs, routing name, log tag) -> context giving its URL.
GATEWAYS: dict[str, Callable[[Sequence[str], str, str], contextlib.AbstractContextManager[str]]] = {
    "smg": smg_gateway,
    "pampero": pampero_gateway,
}
GATEWAY_POLICIES: dict[str, Sequence[str]] = {"smg": SMG_POLICIES, "pampero": PAMPERO_POLICIES}


# ---------------------------------------------------------------------------------------------
# Load generation


async def one_turn(
    client: httpx.AsyncClient, model: str, messages: list[dict[str, str]], max_tokens: int
) -> tuple[Sample, str]:
    body = {
        "model": model, "messages": messages, "max_tokens": max_tokens, "stream": True,
        "stream_options": {"include_usage": True}, "ignore_eos": True, "temperature": 0.7,
    }  # fmt: skip
    sent = time.perf_counter()
    first: float | None = None
    text: list[str] = []
    usage: dict[str, Any] = {}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise BenchError(f"HTTP {response.status_code}: {(await response.aread())[:500]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if "error" in chunk:
                raise BenchError(f"in-band error: {chunk['error']}")
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    first = first or time.perf_counter()
                    text.append(content)
            usage = chunk.get("usage") or usage
    if first is None or not usage:
        raise BenchError("a stream ended without content or usage")
    details = usage.get("prompt_tokens_details") or {}
    sample = Sample(
        ttft=first - sent,
        prompt_tokens=usage["prompt_tokens"],
        cached_tokens=details.get("cached_tokens") or 0,
        completion_tokens=usage["completion_tokens"],
    )
    return sample, "".join(text)


async def play(url: str, model: str, workload: Workload) -> tuple[list[Sample], float]:
    """Every conversation, ``workload.users`` at a time; the samples and the wall time."""
    nonce = secrets.token_hex(4)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for conversation in range(workload.conversations):
        queue.put_nowait(conversation)
    samples: list[Sample] = []

    async def user(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            conversation = queue.get_nowait()
            opening = document(conversation, nonce, workload.facts)
            messages = [{"role": "user", "content": opening}]
            for turn in range(workload.turns):
                sample, reply = await one_turn(client, model, messages, workload.max_tokens)
                samples.append(sample)
                messages += [
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": follow_up(turn + 1)},
                ]

    limits = httpx.Limits(max_connections=workload.users)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(user(client) for _ in range(workload.users)))
        return samples, time.perf_counter() - started


def chat_requests_served(node: str) -> int:
    text = httpx.get(node + "/metrics", timeout=10).text
    prefix = 'pampero_requests_total{route="/v1/chat/completions",status="200"}'
    return int(
        sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))
    )


def run_column(gateway: str, routing: str, args: argparse.Namespace) -> ColumnResult:
    tag = f"{gateway}-{routing}"
    progress(f"{tag}: starting {args.nodes} nodes and the gateway")
    workload = Workload(args.conversations, args.turns, args.users, args.facts, args.max_tokens)
    with (
        pampero_nodes(args.nodes, args.threads, args.pampero_args.split(), tag) as nodes,
        GATEWAYS[gateway](nodes, routing, tag) as url,
    ):
        model = httpx.get(url + "/v1/models", timeout=10).json()["data"][0]["id"]
        progress(f"{tag}: playing the workload")
        samples, wall = asyncio.run(play(url, model, workload))
        result = ColumnResult(
            gateway, routing, samples, wall, [chat_requests_served(n) for n in nodes]
        )
    progress(f"{tag}: {column_figures(result)}")
    return result


# ---------------------------------------------------------------------------------------------
# The report


def progress(message: str) -> None:
    print(f"[bench_fleet {dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def render_report(
    results: Sequence[ColumnResult], args: argparse.Namespace, load: tuple[str, str]
) -> str:
    command = "benchmarks/bench_fleet.py " + " ".join(args.argv)
    versions = []
    if "smg" in args.gateway:
        smg = subprocess.run([smg_binary(), "--version"], capture_output=True, text=True).stdout
        versions.append(smg.strip().splitlines()[0] if smg.strip() else "smg")
    if "pampero" in args.gateway:
        from pampero import __version__

        versions.append(f"pampero {__version__} (its gateway, upstreams over HTTP)")
    setup = [
        ("command", f"`.venv/bin/python {command.strip()}`"),
        ("date", f"{dt.date.today():%Y-%m-%d}"),
        ("machine", f"{os.cpu_count()} cores ({platform.machine()}), shared"),
        ("load average (1/5/15 min), start → end", f"{load[0]} → {load[1]}"),
        ("nodes", f"{args.nodes} × `pampero serve --threads {args.threads}` (default model)"),
        (
            "workload",
            f"{args.conversations} conversations × {args.turns} turns, {args.users} users at "
            f"once, {args.max_tokens} tokens per answer (ignore_eos, temperature 0.7), "
            f"each turn resends the history",
        ),
        ("gateways", "; ".join(versions)),
    ]
    rows = "\n".join(f"| {k} | {v} |" for k, v in setup)
    return f"| setup | |\n| --- | --- |\n{rows}\n\n{render_table(results)}\n"


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gateway", action="append", help="a gateway of GATEWAYS (default: smg and pampero)"
    )
    parser.add_argument(
        "--routing",
        default="",
        help="comma-separated routing policies, each a column per gateway (GATEWAY:NAME: of "
        "that gateway alone); default: every policy of each gateway",
    )
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads per node")
    parser.add_argument("--conversations", type=int, default=12)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--users", type=int, default=6, help="conversations played at once")
    parser.add_argument("--facts", type=int, default=16, help="length of each opening report")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--pampero-args", default="", help="extra flags for every node")
    parser.add_argument("--write", type=Path, help="rewrite this file's bench_fleet section")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.gateway = args.gateway or ["smg", "pampero"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        columns = parse_columns(args.gateway, [r for r in args.routing.split(",") if r])
        load_start = load_average()
        results = [run_column(gateway, routing, args) for gateway, routing in columns]
    except (BenchError, httpx.HTTPError) as exc:
        print(f"bench_fleet: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    report = render_report(results, args, (load_start, load_average()))
    print(report)
    if args.write:
        args.write.write_text(replace_section(args.write.read_text(), report))
        progress(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
