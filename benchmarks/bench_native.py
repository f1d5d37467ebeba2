"""pampero against native ``llama-server``, built from the llama.cpp that llama-cpp-python vendors.

Same kernels, no Python: the anchor of issue 16. The benchmark builds ``llama-server`` once from
the llama-cpp-python sdist of the installed version (``pip download --no-binary :all:``) into
``~/.cache/pampero/llama-server-<version>`` (never into the repository), then runs each server
in turn on a free loopback port, never two at once: llama-server, pampero (one KV buffer per
sequence, as llama-server ``-np N`` keeps them, and its prefix cache in host memory), and
pampero with ``--kv-unified`` (one KV buffer for all sequences, its prefix cache in extra
cells)::

    .venv/bin/python benchmarks/bench_native.py --write docs/benchmarks.md

Workloads, each on every server:

- **decode**: one stream of ``--max-tokens`` tokens at temperature 0.7 (end of generation
  suppressed), tok/s from first to last content delta; the median of ``--repeat`` streams,
  after one warm-up stream. The first stream after start is also reported alone (no warm-up).
- **TTFT**: best of ``--repeat`` short streams when idle, and right after another client
  closed its stream after the first event (the sequence it leaves must be freed at once).
- **aggregate**: 4, 8 and 16 streams sent at once (16 is twice the sequence slots: half of
  them queue), tokens of all over the wall time; the median of ``--repeat`` rounds.
- **input-grounded**: rewrite a ~300-token function with one change, greedy; tok/s over the
  whole answer. pampero runs it with and without n-gram speculation.
- **multi-conversation**: ``--conversations`` chats of ``--turns`` turns, all sharing one
  system prompt, run concurrently (turns of one chat in order): TTFT p50/p99 and the share of
  prompt tokens served from cache (``usage.prompt_tokens_details.cached_tokens``).
- **memory**: the server process's resident memory once the run is over (idle), its peak
  over the run (``VmHWM``), and its worker processes' when it has any.
- **paired decode** (``--paired N``, after the rounds): llama-server and pampero loaded side
  by side (only one ever streaming), ``N`` single streams each, alternating A B, B A, ...; the
  median of the per-pair ratios. The machine's drift weighs on both sides of every pair, so
  this resolves differences of 1-2% that separate runs (several percent apart) cannot. Which
  process was started first moves the ratio too (two identical servers side by side: the
  second at 0.978-0.996 of the first), so half the pairs run with llama-server started first
  and half, after a restart of both, with pampero started first; both halves are reported.
  ``--paired-aggregate N`` does the same with ``--max-seqs`` streams sent at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import (
    LOG_DIR,
    SseDecoder,
    cpu_model,
    default_model,
    end_of_generation_ids,
    free_port,
    progress,
    replace_section,
    running_server,
)

MARKERS = ("<!-- bench_native:start -->", "<!-- bench_native:end -->")
LLAMA_SERVER, PAMPERO = "llama-server", "pampero"
# pampero with one KV buffer for all sequences: prefixes shared without copies, but each
# sequence's attention spans every sequence's cells.
PAMPERO_UNIFIED = "pampero --kv-unified"
TOPICS = (
    "Explain how a hash map works.", "Explain how TCP handshakes work.",
    "Explain how a B-tree works.", "Explain how garbage collection works.",
    "Explain how DNS resolution works.", "Explain how a compiler parses code.",
    "Explain how HTTPS certificates work.", "Explain how a CPU cache works.",
)  # fmt: skip
SPECULATIVE = {"method": "ngram"}  # up to 16 drafts a step, fewer while rejected

FUNCTION = '''def summarize_orders(orders, tax_rate, currency="EUR"):
    """Group orders by customer and return totals, tax included, sorted by amount."""
    totals = {}
    counts = {}
    for order in orders:
        customer = order["customer"]
        amount = 0.0
        for line in order["lines"]:
            price = line["unit_price"] * line["quantity"]
            if line.get("discount"):
                price = price * (1 - line["discount"])
            amount += price
        totals[customer] = totals.get(customer, 0.0) + amount
        counts[customer] = counts.get(customer, 0) + 1
    rows = []
    for customer, amount in totals.items():
        taxed = round(amount * (1 + tax_rate), 2)
        rows.append({"customer": customer, "orders": counts[customer],
                     "total": taxed, "currency": currency})
    rows.sort(key=lambda row: row["total"], reverse=True)
    return rows
'''
REWRITE = (
    "Rewrite this Python function so that the parameter `tax_rate` is named `vat_rate`. "
    "Change nothing else and reply with the code only.\n\n" + FUNCTION
)
SYSTEM = (
    "You are the support assistant of a small online bookshop. Answer in two sentences at "
    "most, politely, without lists. Shipping takes three days inside the country and costs "
    "four euros; orders above forty euros ship free. Returns are accepted within thirty days."
)
QUESTIONS = [
    "Hello!", "How long does shipping take?", "And what does it cost?",
    "Can I return a book?", "What if it arrived damaged?", "Thanks, bye!",
]  # fmt: skip


def llama_cpp_version() -> str:
    return importlib.metadata.version("llama_cpp_python")


def build_llama_server(version: str, jobs: int) -> Path:
    """``llama-server`` of llama-cpp-python ``version``'s vendored llama.cpp, built once."""
    root = Path.home() / ".cache" / "pampero" / f"llama-server-{version}"
    binary = root / "build" / "bin" / "llama-server"
    if binary.exists():
        return binary
    root.mkdir(parents=True, exist_ok=True)
    sdist = root / "sdist"
    if not any(sdist.glob("*.tar.gz")):
        pip = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
        subprocess.run([*pip, f"llama-cpp-python=={version}", "-d", str(sdist)], check=True)
    source = root / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if not source.exists():
        with tarfile.open(next(sdist.glob("*.tar.gz"))) as archive:
            archive.extractall(root, filter="data")
    flags = [
        "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON",
        "-DBUILD_SHARED_LIBS=OFF",
    ]  # fmt: skip
    progress(f"building llama-server {version} into {root} (minutes on a small machine)")
    subprocess.run(["cmake", "-S", str(source), "-B", str(root / "build"), *flags], check=True)
    build = ["cmake", "--build", str(root / "build"), "--target", "llama-server", "-j", str(jobs)]
    subprocess.run(build, check=True)
    return binary


@dataclass
class Config:
    model: Path
    threads: int
    n_ctx: int
    max_seqs: int
    max_tokens: int
    repeat: int
    conversations: int
    turns: int
    eog_ids: tuple[int, ...]
    binary: Path | None = None


def command(side: str, cfg: Config, port: int) -> list[str]:
    if side == LLAMA_SERVER:
        assert cfg.binary is not None
        return [
            str(cfg.binary), "-m", str(cfg.model), "--host", "127.0.0.1", "--port", str(port),
            "-c", str(cfg.n_ctx * cfg.max_seqs), "-np", str(cfg.max_seqs),
            "-t", str(cfg.threads), "-tb", str(cfg.threads), "--no-webui",
        ]  # fmt: skip
    if side == PAMPERO_UNIFIED:
        return [*command(PAMPERO, cfg, port), "--kv-unified"]
    return [
        sys.executable, "-m", "pampero", "serve", "--model", str(cfg.model), "--port", str(port),
        "--threads", str(cfg.threads), "--n-ctx", str(cfg.n_ctx),
        "--max-seqs", str(cfg.max_seqs), "--prefix-cache-tokens", str(cfg.n_ctx * 4),
    ]  # fmt: skip


@dataclass
class Stream:
    sent: float
    first: float | None = None
    last: float | None = None
    deltas: int = 0
    tokens: int | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    text: list[str] = field(default_factory=list)

    @property
    def ttft(self) -> float:
        assert self.first is not None
        return self.first - self.sent

    @property
    def rate(self) -> float:
        n = self.tokens if self.tokens is not None else self.deltas
        if self.first is None or self.last is None or self.last <= self.first or n < 2:
            return 0.0
        return (n - 1) / (self.last - self.first)


async def stream_chat(
    client: httpx.AsyncClient, model: str, messages: list[dict[str, str]], **fields: Any
) -> Stream:
    body = {
        "model": model, "messages": messages, "stream": True,
        "stream_options": {"include_usage": True}, **fields,
    }  # fmt: skip
    result = Stream(sent=time.perf_counter())
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread())[:300]!r}")
        decoder = SseDecoder()
        async for line in response.aiter_lines():
            data = decoder.feed(line)
            if data is None or data == "[DONE]":
                continue
            _absorb(result, json.loads(data), time.perf_counter())
    return result


def _absorb(result: Stream, obj: dict[str, Any], now: float) -> None:
    choices = obj.get("choices") or []
    content = ((choices[0].get("delta") or {}).get("content") or "") if choices else ""
    if content:
        result.first = result.first or now
        result.last = now
        result.deltas += 1
        result.text.append(content)
    usage = obj.get("usage") or {}
    if usage:
        result.tokens = usage.get("completion_tokens", result.tokens)
        result.prompt_tokens = usage.get("prompt_tokens", 0)
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens")
        if cached is None:  # llama-server's own field
            cached = (obj.get("timings") or {}).get("cache_n", 0)
        result.cached_tokens = int(cached or 0)


def fixed_length(side: str, cfg: Config) -> dict[str, Any]:
    if side == LLAMA_SERVER:
        return {"logit_bias": {str(t): -100 for t in cfg.eog_ids}}
    return {"ignore_eos": True}


async def measure(side: str, base_url: str, model: str, cfg: Config) -> dict[str, float]:
    out: dict[str, float] = {}
    timeout = httpx.Timeout(1800.0, connect=10.0)
    # One connection per request: llama-server (cpp-httplib) closes kept-alive connections on
    # its own schedule, and a request sent on one just then fails with "Server disconnected
    # without sending a response" (seen in the 16-conversation workload). A loopback connect
    # costs ~0.1 ms, the same for both servers.
    limits = httpx.Limits(max_connections=cfg.conversations + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=timeout, limits=limits, headers={"connection": "close"}
    ) as client:
        user = [{"role": "user", "content": "Explain how a hash map works, in detail."}]
        plain = {"temperature": 0.7, "max_tokens": cfg.max_tokens, **fixed_length(side, cfg)}
        first = await stream_chat(client, model, user, **plain)
        out["first stream after start, tok/s"] = first.rate
        rates = [(await stream_chat(client, model, user, **plain)).rate for _ in range(cfg.repeat)]
        out["decode tok/s, 1 stream (median)"] = statistics.median(rates)
        out.update(await after_a_closed_stream(client, model, user, plain, cfg))
        for width in (4, 8, 16):
            out[f"aggregate tok/s, {width} streams (median)"] = statistics.median(
                [await aggregate(client, model, plain, width) for _ in range(cfg.repeat)]
            )
        grounded = [{"role": "user", "content": REWRITE}]
        for label, extra in _grounded_variants(side):
            runs = [
                await stream_chat(client, model, grounded, temperature=0, max_tokens=400, **extra)
                for _ in range(cfg.repeat)
            ]
            out[f"input-grounded rewrite tok/s{label}"] = statistics.median(r.rate for r in runs)
        out.update(await conversations(client, model, cfg))
    return out


async def aggregate(
    client: httpx.AsyncClient, model: str, plain: dict[str, Any], width: int
) -> float:
    """``width`` streams sent at once (each with its own question): tokens of all of them over
    the wall time from the first request to the last token."""
    started = time.perf_counter()
    streams = await asyncio.gather(
        *(
            stream_chat(client, model, [{"role": "user", "content": f"({i}) {TOPICS[i % 8]}"}],
                        **plain)
            for i in range(width)
        )
    )  # fmt: skip
    ended = max(s.last or started for s in streams)
    return sum(s.tokens or s.deltas for s in streams) / (ended - started)


async def after_a_closed_stream(
    client: httpx.AsyncClient,
    model: str,
    user: list[dict[str, str]],
    plain: dict[str, Any],
    cfg: Config,
) -> dict[str, float]:
    """TTFT best of ``repeat`` when idle, and of a request sent right after another client
    closed its stream mid-answer (the server must notice and free its sequence at once)."""
    short = {**plain, "max_tokens": 8}
    idle = [(await stream_chat(client, model, user, **short)).ttft for _ in range(cfg.repeat)]
    after = []
    for _ in range(cfg.repeat):
        body = {"model": model, "messages": user, "stream": True, **plain}
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            async for _line in response.aiter_lines():
                break  # the client leaves after the first event
        after.append((await stream_chat(client, model, user, **short)).ttft)
    return {
        "TTFT best of 3, idle (ms)": 1000 * min(idle),
        "TTFT best of 3, right after a closed stream (ms)": 1000 * min(after),
    }


def _grounded_variants(side: str) -> list[tuple[str, dict[str, Any]]]:
    if side == LLAMA_SERVER:
        return [("", {})]
    return [("", {}), (" (ngram speculation)", {"speculative": SPECULATIVE})]


async def conversations(client: httpx.AsyncClient, model: str, cfg: Config) -> dict[str, float]:
    streams: list[Stream] = []

    async def chat(index: int) -> None:
        messages = [{"role": "system", "content": SYSTEM}]
        for turn in range(cfg.turns):
            question = QUESTIONS[turn % len(QUESTIONS)]
            messages.append({"role": "user", "content": f"(customer {index}) {question}"})
            reply = await stream_chat(client, model, messages, temperature=0.7, max_tokens=32)
            streams.append(reply)
            messages.append({"role": "assistant", "content": "".join(reply.text)})

    await asyncio.gather(*(chat(i) for i in range(cfg.conversations)))
    ttfts = sorted(s.ttft for s in streams if s.first is not None)
    prompt = sum(s.prompt_tokens for s in streams)
    return {
        "multi-conversation TTFT p50 (ms)": 1000 * statistics.median(ttfts),
        "multi-conversation TTFT p99 (ms)": 1000
        * ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
        "multi-conversation cached-token ratio": sum(s.cached_tokens for s in streams)
        / max(prompt, 1),
    }


def run_side(side: str, cfg: Config) -> dict[str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = command(side, cfg, port)
    progress(f"{side}: {shlex.join(argv)}")
    log = LOG_DIR / f"native-{side.replace(' ', '')}.log"
    procs: list[subprocess.Popen[bytes]] = []
    with running_server(argv, base, log, 600.0, procs.append) as model:
        figures = asyncio.run(measure(side, base, model, cfg))
        figures.update(memory(procs[0].pid))
        return figures


def memory(pid: int) -> dict[str, float]:
    """The server's resident memory once the run is over and it idles, its peak over the run
    (both of the server's own process), and its worker processes' (pampero's constraint
    compiler) when it has any."""
    figures = {
        "RSS after the run, idle (MB)": status_mb(pid, "VmRSS"),
        "peak RSS under load (MB)": status_mb(pid, "VmHWM"),
    }
    workers = descendants(pid)
    if workers:
        figures["worker processes' RSS (MB)"] = sum(status_mb(p, "VmRSS") for p in workers)
    return figures


def status_mb(pid: int, field: str) -> float:
    """A ``/proc/<pid>/status`` memory field (kB there) in MB; 0 for a process gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc/<pid>/task/<tid>/children``)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            pending.extend(children)
    return found


def paired_decode(cfg: Config, pairs: int, width: int = 1) -> str:
    """Decode of one stream (``width`` 1) or of ``width`` streams sent at once (their
    aggregate), llama-server and pampero loaded together and run in turn (A B, B A, ...): each
    pair's ratio, their median and spread. The servers are started in one order for the first
    half of the pairs and in the other for the second half."""
    halves = [(LLAMA_SERVER, PAMPERO), (PAMPERO, LLAMA_SERVER)]
    rates: dict[str, list[float]] = {LLAMA_SERVER: [], PAMPERO: []}
    by_half: list[list[float]] = []
    for index, order in enumerate(halves):
        count = (pairs + 1 - index) // 2  # the first half takes the odd pair
        if count == 0:
            continue
        half = _paired_half(cfg, order, count, width)
        for side in rates:
            rates[side] += half[side]
        by_half.append(_ratios(half))
    ratios = sorted(r for half in by_half for r in half)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    per_half = "; ".join(
        f"{first} started first: median {statistics.median(half):.3f} over {len(half)}"
        for (first, _), half in zip(halves, by_half, strict=False)
    )
    what = "single-stream decode" if width == 1 else f"aggregate decode of {width} streams"
    return (
        f"paired {what}, {pairs} pairs: llama-server median "
        f"{statistics.median(rates[LLAMA_SERVER]):.2f} tok/s, pampero median "
        f"{statistics.median(rates[PAMPERO]):.2f} tok/s; pampero / llama-server per pair: median "
        f"{statistics.median(ratios):.3f}, quartiles {quartiles[0]:.3f} - {quartiles[2]:.3f}, "
        f"range {ratios[0]:.3f} - {ratios[-1]:.3f} ({per_half})"
    )


def _ratios(rates: dict[str, list[float]]) -> list[float]:
    return [p / n for n, p in zip(rates[LLAMA_SERVER], rates[PAMPERO], strict=True)]


def _paired_half(
    cfg: Config, order: tuple[str, str], pairs: int, width: int
) -> dict[str, list[float]]:
    """``pairs`` pairs with the servers started in ``order``."""
    with contextlib.ExitStack() as stack:
        bases: dict[str, tuple[str, str]] = {}
        for side in order:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            log = LOG_DIR / f"native-paired-{side}.log"
            model = stack.enter_context(running_server(command(side, cfg, port), base, log, 600.0))
            bases[side] = (base, model)
        return asyncio.run(_paired_rates(bases, cfg, pairs, width))


async def _paired_rates(
    bases: dict[str, tuple[str, str]], cfg: Config, pairs: int, width: int
) -> dict[str, list[float]]:
    user = [{"role": "user", "content": "Explain how a hash map works, in detail."}]
    limits = httpx.Limits(max_connections=width + 4, max_keepalive_connections=0)
    rates: dict[str, list[float]] = {side: [] for side in bases}
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            side: await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base,
                    timeout=httpx.Timeout(600.0, connect=10.0),
                    limits=limits,
                    headers={"connection": "close"},
                )
            )
            for side, (base, _) in bases.items()
        }

        async def one(side: str) -> float:
            plain = {"temperature": 0.7, "max_tokens": cfg.max_tokens, **fixed_length(side, cfg)}
            if width > 1:
                return await aggregate(clients[side], bases[side][1], plain, width)
            return (await stream_chat(clients[side], bases[side][1], user, **plain)).rate

        order = list(bases)
        for side in order:  # one warm-up run each
            await one(side)
        for index in range(pairs):
            for side in order if index % 2 == 0 else reversed(order):
                rates[side].append(await one(side))
    return rates


def run_rounds(
    sides: list[str],
    cfg: Config,
    rounds: int,
    run: Callable[[str, Config], dict[str, float]] = run_side,
) -> dict[str, dict[str, float]]:
    """Every side ``rounds`` times (A B C, then C B A, ...): each figure's median per side."""
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for index in range(max(rounds, 1)):
        for side in sides if index % 2 == 0 else reversed(sides):
            runs[side].append(run(side, cfg))
    return {
        side: {
            key: statistics.median(r[key] for r in results if key in r)
            for key in dict.fromkeys(k for r in results for k in r)
        }
        for side, results in runs.items()
    }


def render(
    results: dict[str, dict[str, float]], cfg: Config, argv: Sequence[str], rounds: int = 1
) -> str:
    sides = list(results)
    keys = list(dict.fromkeys(k for r in results.values() for k in r))
    lines = ["| metric | " + " | ".join(sides) + " |", "| --- |" + " ---: |" * len(sides)]
    for key in keys:
        cells = [f"{results[s][key]:.2f}" if key in results[s] else "—" for s in sides]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    load = os.getloadavg()
    lines += [
        "",
        f"command: `{shlex.join(argv)}`; machine: {cpu_model()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at the end of the run; "
        f"{cfg.threads} threads, n_ctx {cfg.n_ctx} per sequence, {cfg.max_seqs} sequences; "
        f"{rounds} round(s), medians; llama-cpp-python {llama_cpp_version()}.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--max-seqs", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=16)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every server this many times, in order then in reverse order and so on, and "
        "report each figure's median (a drift of the machine then weighs on every side alike); "
        "0: only the paired figures",
    )
    parser.add_argument("--only", choices=[LLAMA_SERVER, PAMPERO, PAMPERO_UNIFIED])
    parser.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="N",
        help="after the rounds, N single-stream pairs with llama-server and pampero loaded "
        "side by side, alternating (see the module's docstring)",
    )
    parser.add_argument(
        "--paired-aggregate",
        type=int,
        default=0,
        metavar="N",
        help="then N pairs of --max-seqs streams sent at once (aggregate decode), the same way",
    )
    parser.add_argument("--build-jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args(argv)
    model = (args.model or default_model()).resolve()
    cfg = Config(
        model=model, threads=args.threads, n_ctx=args.n_ctx, max_seqs=args.max_seqs,
        max_tokens=args.max_tokens, repeat=args.repeat, conversations=args.conversations,
        turns=args.turns, eog_ids=tuple(end_of_generation_ids(model)),
    )  # fmt: skip
    sides = [args.only] if args.only else [LLAMA_SERVER, PAMPERO, PAMPERO_UNIFIED]
    if LLAMA_SERVER in sides:
        if shutil.which("cmake") is None:
            print("bench_native: cmake is needed to build llama-server", file=sys.stderr)
            return 1
        cfg.binary = build_llama_server(llama_cpp_version(), args.build_jobs)
    if args.rounds > 0:
        report = render(run_rounds(sides, cfg, args.rounds), cfg, sys.orig_argv, args.rounds)
    else:  # the paired figures alone
        report = f"command: `{shlex.join(sys.orig_argv)}`; machine: {cpu_model()}"
    if args.paired > 0 and cfg.binary is not None and PAMPERO in sides:
        report += "\n\n" + paired_decode(cfg, args.paired)
    if args.paired_aggregate > 0 and cfg.binary is not None and PAMPERO in sides:
        report += "\n\n" + paired_decode(cfg, args.paired_aggregate, cfg.max_seqs)
    print(report)
    if args.write:
        existing = args.write.read_text() if args.write.exists() else None
        args.write.write_text(replace_section(existing, report, MARKERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
