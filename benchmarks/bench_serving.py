"""Serving benchmark: pampero against ``python -m llama_cpp.server``, same model, same threads.

One run starts each server in turn on a free loopback port (never both at once), streams chat
completions at it with an async httpx client, stops it, and prints a markdown report::

    .venv/bin/python benchmarks/bench_serving.py --repeat 3 --write docs/benchmarks.md

Metrics, each the median over ``--repeat`` rounds:

- TTFT: time from sending a request to its first non-empty content delta.
- decode tok/s, 1 stream: (completion tokens - 1) / (last content delta - first content delta).
- aggregate tok/s for 1, 4 and 8 simultaneous streams: all their completion tokens divided by
  the wall time from the first send to the last byte of the last stream.

Every request asks for exactly ``--max-tokens`` tokens: pampero gets ``ignore_eos``;
llama_cpp.server, which does not know it, gets ``logit_bias`` -100 on every end-of-generation
token of the model's vocabulary. A stream that still comes back shorter flags its row.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import logging
import os
import platform
import shlex
import signal
import socket
import statistics
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
LEVELS = (1, 4, 8)
SECTION_START = "<!-- bench_serving:start -->"
SECTION_END = "<!-- bench_serving:end -->"
DOC_INTRO = """# Benchmarks

`benchmarks/bench_serving.py` measures pampero and `python -m llama_cpp.server` on the same model
and thread count, one server after the other, and rewrites the section below with `--write`.
Targets: single-stream decode at least 0.95x llama_cpp.server; aggregate throughput at 8
concurrent streams at least 2x llama_cpp.server.

"""
PROMPT = (
    "Write a Python function that parses an ISO 8601 date string into a datetime object, "
    "then explain how it handles time zones."
)
# Sampled rather than greedy decoding, as real traffic is. No seed: pampero recomputes a seeded
# request's prompt instead of reusing a cached prefix (so that a seed reproduces its output),
# which would charge it a full prefill that llama_cpp.server never pays. Every stream is fixed
# at max_tokens, so which tokens are sampled does not change the figures.
TEMPERATURE = 0.7
TOP_P = 0.95
TAIL_LINES = 40
PROMPT_ROOM = 256


class BenchError(Exception):
    """The benchmark cannot go on: a server failed to start, answered an error, or died."""


# ---------------------------------------------------------------------------------------------
# Server-sent events and chunk accounting (pure)


@dataclass
class SseDecoder:
    """Turns the lines of an event stream into event payloads (the joined ``data`` fields)."""

    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> str | None:
        """The payload of the event that ``line`` completes, if it completes one.

        >>> d = SseDecoder(); d.feed('data: {"a": 1}'), d.feed("")
        (None, '{"a": 1}')
        """
        if not line:
            payload = "\n".join(self._data) if self._data else None
            self._data.clear()
            return payload
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        return None


@dataclass(frozen=True)
class Chunk:
    """What the benchmark needs from one ``chat.completion.chunk``."""

    content: str
    finish_reason: str | None
    usage_tokens: int | None


def parse_chunk(obj: dict[str, Any]) -> Chunk:
    """Read the first choice's content delta, its finish reason and any usage block."""
    if "error" in obj:
        raise BenchError(f"the server sent an in-band error: {json.dumps(obj['error'])}")
    choices = obj.get("choices") or []
    choice = choices[0] if choices else {}
    delta = choice.get("delta") or {}
    usage = obj.get("usage") or {}
    tokens = usage.get("completion_tokens")
    return Chunk(
        content=delta.get("content") or "",
        finish_reason=choice.get("finish_reason"),
        usage_tokens=int(tokens) if tokens is not None else None,
    )


@dataclass
class StreamResult:
    """Timestamps (``time.perf_counter`` seconds) and counts of one streamed request."""

    sent: float
    requested: int
    first: float | None = None
    last: float | None = None
    ended: float | None = None
    content_chunks: int = 0
    usage_tokens: int | None = None
    finish_reason: str | None = None

    def add(self, chunk: Chunk, now: float) -> None:
        if chunk.content:
            self.content_chunks += 1
            self.first = now if self.first is None else self.first
            self.last = now
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage_tokens is not None:
            self.usage_tokens = chunk.usage_tokens

    @property
    def tokens(self) -> int:
        """Completion tokens, as exactly as the stream tells them.

        The usage block is the server's own count. Without one (llama_cpp.server never streams
        usage), finish_reason "length" says the request's max_tokens was reached; content deltas
        are the last resort and a lower bound, since one delta may carry several tokens of a
        multi-byte character.
        """
        if self.usage_tokens is not None:
            return self.usage_tokens
        if self.finish_reason == "length":
            return self.requested
        return self.content_chunks

    @property
    def ttft(self) -> float:
        if self.first is None:
            raise BenchError("a stream ended without any content")
        return self.first - self.sent

    @property
    def decode_rate(self) -> float:
        if self.first is None or self.last is None or self.last <= self.first:
            raise BenchError("a stream has too few content deltas to time its decode")
        return (self.tokens - 1) / (self.last - self.first)


@dataclass(frozen=True)
class LevelResult:
    """One burst of ``len(streams)`` simultaneous requests."""

    started: float
    streams: tuple[StreamResult, ...]

    @property
    def concurrency(self) -> int:
        return len(self.streams)

    @property
    def aggregate_rate(self) -> float:
        ended = max(s.ended if s.ended is not None else s.sent for s in self.streams)
        return sum(s.tokens for s in self.streams) / (ended - self.started)

    def short_streams(self, max_tokens: int) -> list[StreamResult]:
        return [s for s in self.streams if s.tokens != max_tokens]


def level_metrics(level: LevelResult) -> dict[str, float]:
    """This level's metrics, keyed ``name@concurrency``; times in milliseconds."""
    c = level.concurrency
    metrics = {
        f"ttft@{c}": 1000 * statistics.median(s.ttft for s in level.streams),
        f"agg@{c}": level.aggregate_rate,
    }
    if c == 1:
        metrics["decode@1"] = level.streams[0].decode_rate
    return metrics


@dataclass
class ServerRun:
    """Everything measured on one server: metrics per round, and which ones are suspect."""

    rounds: list[dict[str, float]] = field(default_factory=list)
    flagged: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def add_round(self, levels: Sequence[LevelResult], max_tokens: int) -> None:
        metrics: dict[str, float] = {}
        for level in levels:
            level_values = level_metrics(level)
            metrics.update(level_values)
            short = level.short_streams(max_tokens)
            if short:
                self.flagged.update(level_values)
                counts = ", ".join(f"{s.tokens} ({s.finish_reason})" for s in short)
                self.notes.append(
                    f"round {len(self.rounds) + 1}, {level.concurrency} stream(s): {len(short)} "
                    f"produced other than {max_tokens} tokens: {counts}"
                )
        self.rounds.append(metrics)

    def medians(self) -> dict[str, float]:
        return {key: statistics.median(r[key] for r in self.rounds) for key in self.rounds[0]}


# ---------------------------------------------------------------------------------------------
# Report (pure)


@dataclass(frozen=True)
class MetricRow:
    key: str
    label: str
    digits: int


ROWS = (
    MetricRow("ttft@1", "TTFT, 1 stream (ms)", 0),
    MetricRow("decode@1", "decode tok/s, 1 stream", 1),
    *(MetricRow(f"agg@{c}", f"aggregate tok/s, {c} stream(s)", 1) for c in LEVELS),
    *(MetricRow(f"ttft@{c}", f"TTFT median, {c} streams (ms)", 0) for c in LEVELS[1:]),
)
BASELINE, CANDIDATE = "llama_cpp", "pampero"
LABELS = {BASELINE: "llama_cpp.server", CANDIDATE: "pampero"}
TARGETS = (("decode@1", 0.95, "single-stream decode"), ("agg@8", 2.0, "aggregate at 8 streams"))


def _cell(run: ServerRun | None, row: MetricRow) -> str:
    if run is None:
        return "—"
    mark = " †" if row.key in run.flagged else ""
    return f"{run.medians()[row.key]:.{row.digits}f}{mark}"


def _ratio(runs: dict[str, ServerRun], key: str) -> float | None:
    if BASELINE not in runs or CANDIDATE not in runs:
        return None
    return runs[CANDIDATE].medians()[key] / runs[BASELINE].medians()[key]


def render_table(runs: dict[str, ServerRun]) -> str:
    """Rows are metrics; columns llama_cpp.server, pampero and their ratio."""
    lines = [
        f"| metric | {LABELS[BASELINE]} | {LABELS[CANDIDATE]} | ratio pampero/llama_cpp.server |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in ROWS:
        ratio = _ratio(runs, row.key)
        shown = "—" if ratio is None else f"{ratio:.2f}x"
        cells = [_cell(runs.get(side), row) for side in (BASELINE, CANDIDATE)]
        lines.append(f"| {row.label} | {cells[0]} | {cells[1]} | {shown} |")
    return "\n".join(lines)


def render_targets(runs: dict[str, ServerRun]) -> str:
    def verdict(ratio: float | None, goal: float) -> str:
        if ratio is None:
            return "not measured"
        return f"{ratio:.2f}x, {'met' if ratio >= goal else 'NOT met'}"

    parts = [
        f"{name} >= {goal}x: {verdict(_ratio(runs, key), goal)}" for key, goal, name in TARGETS
    ]
    return "Targets: " + "; ".join(parts) + "."


def render_report(runs: dict[str, ServerRun], setup: Sequence[tuple[str, str]]) -> str:
    notes = [f"- {LABELS[side]}: {note}" for side, run in runs.items() for note in run.notes]
    flagged = ["", "† a stream of this row did not produce exactly max_tokens tokens:", *notes]
    lines = [
        render_table(runs),
        *(flagged if notes else []),
        "",
        "A ratio above 1 favours pampero for tok/s, below 1 for TTFT.",
        render_targets(runs),
        "",
        "| setup | |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in setup),
    ]
    return "\n".join(lines)


def replace_section(
    document: str | None, body: str, markers: tuple[str, str] = (SECTION_START, SECTION_END)
) -> str:
    """``document`` with the text between ``markers`` (bench_serving's) replaced by ``body``."""
    begin, finish = markers
    section = f"{begin}\n{body.strip()}\n{finish}"
    if document is None:
        return f"{DOC_INTRO}{section}\n"
    start, end = document.find(begin), document.find(finish)
    if start == -1 or end < start:
        return f"{document.rstrip()}\n\n{section}\n"
    return document[:start] + section + document[end + len(finish) :]


# ---------------------------------------------------------------------------------------------
# The machine, the model and the software under test


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def end_of_generation_ids(model: Path) -> list[int]:
    """Every token the model's vocabulary marks as ending generation, as llama.cpp sees it."""
    import llama_cpp

    # The vocabulary load otherwise prints the whole GGUF metadata to stderr.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    handle = llama_cpp.llama_model_load_from_file(str(model).encode(), params)
    if not handle:
        raise BenchError(f"llama.cpp cannot read the vocabulary of {model}")
    try:
        vocab = llama_cpp.llama_model_get_vocab(handle)
        count = llama_cpp.llama_vocab_n_tokens(vocab)
        return [t for t in range(count) if llama_cpp.llama_vocab_is_eog(vocab, t)]
    finally:
        llama_cpp.llama_model_free(handle)


def _import_pampero() -> None:
    # `python benchmarks/bench_serving.py` from a source checkout puts only benchmarks/ on the path.
    if importlib.util.find_spec("pampero") is None:
        sys.path.insert(0, str(REPO_ROOT))


def default_model() -> Path:
    _import_pampero()
    from pampero.assets import ensure_default_model
    from pampero.settings import default_home

    home = os.environ.get("PAMPERO_HOME")
    return ensure_default_model(Path(home) if home else default_home())


def software_versions() -> str:
    _import_pampero()
    import pampero

    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    revision = f" ({git.stdout.strip()})" if git.returncode == 0 else ""
    packages = {name: importlib.metadata.version(name) for name in ("llama_cpp_python", "httpx")}
    listed = ", ".join(f"{name} {version}" for name, version in packages.items())
    return f"pampero {pampero.__version__}{revision}, {listed}, Python {platform.python_version()}"


# ---------------------------------------------------------------------------------------------
# Server processes


@dataclass(frozen=True)
class BenchConfig:
    model: Path
    threads: int
    n_ctx: int
    max_tokens: int
    repeat: int
    startup_timeout: float
    request_timeout: float
    cold_prompts: bool
    eog_ids: tuple[int, ...]
    extra_args: dict[str, list[str]]


def llama_cpp_command(cfg: BenchConfig, port: int) -> list[str]:
    # Interrupting is llama_cpp.server's default: each new request would cut the running stream.
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(cfg.model),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(cfg.n_ctx),
        "--n_threads", str(cfg.threads), "--n_threads_batch", str(cfg.threads),
        "--interrupt_requests", "False", *cfg.extra_args[BASELINE],
    ]  # fmt: skip


def pampero_command(cfg: BenchConfig, port: int) -> list[str]:
    return [
        sys.executable, "-m", "pampero", "serve", "--model", str(cfg.model),
        "--threads", str(cfg.threads), "--port", str(port), "--n-ctx", str(cfg.n_ctx),
        "--max-seqs", str(max(LEVELS)), *cfg.extra_args[CANDIDATE],
    ]  # fmt: skip


def llama_cpp_extras(cfg: BenchConfig) -> dict[str, Any]:
    return {"logit_bias": {str(token): -100 for token in cfg.eog_ids}}


def pampero_extras(cfg: BenchConfig) -> dict[str, Any]:
    return {"ignore_eos": True}


@dataclass(frozen=True)
class ServerSpec:
    command: Callable[[BenchConfig, int], list[str]]
    request_extras: Callable[[BenchConfig], dict[str, Any]]


SERVERS = {
    BASELINE: ServerSpec(llama_cpp_command, llama_cpp_extras),
    CANDIDATE: ServerSpec(pampero_command, pampero_extras),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def wait_ready(proc: subprocess.Popen[bytes], base_url: str, log: Path, timeout: float) -> str:
    """Poll ``GET /v1/models`` until it answers 200; the first model id it lists."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(
                    f"the server exited with code {proc.returncode} before it was "
                    f"ready; last lines of {log}:\n{log_tail(log)}"
                )
            with contextlib.suppress(httpx.TransportError):
                response = client.get("/v1/models")
                if response.status_code == 200:
                    model_id: str = response.json()["data"][0]["id"]
                    return model_id
            time.sleep(0.25)
    raise BenchError(
        f"the server was not ready after {timeout:.0f} s; last lines of {log}:\n{log_tail(log)}"
    )


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def running_server(
    argv: list[str],
    base_url: str,
    log: Path,
    timeout: float,
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> Iterator[str]:
    """Run ``argv`` until the block ends; yields the model id the server lists. ``started``
    is given the server's process once it is ready (to read its memory, say)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        # Its own session, so a Ctrl-C on the benchmark reaches the server only through stop().
        proc = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True
        )
        try:
            model_id = wait_ready(proc, base_url, log, timeout)
            if started is not None:
                started(proc)
            try:
                yield model_id
            except Exception:  # a failed request often has its cause in the server's log
                sys.stderr.write(f"last lines of {log}:\n{log_tail(log)}\n")
                raise
        finally:
            stop(proc)


# ---------------------------------------------------------------------------------------------
# Load generation


def chat_messages(tag: int | None) -> list[dict[str, str]]:
    """The fixed prompt; with a ``tag``, behind a system line no other request shares."""
    user = {"role": "user", "content": PROMPT}
    if tag is None:
        return [user]
    # The tag comes first so that no server finds a cached prefix worth reusing.
    return [
        {"role": "system", "content": f"Conversation {tag}. You are a helpful assistant."},
        user,
    ]


def chat_payload(
    model_id: str,
    max_tokens: int,
    messages: list[dict[str, str]],
    extras: dict[str, Any],
) -> dict[str, Any]:
    return {
        "model": model_id,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": TEMPERATURE,
        "top_p": TOP_P,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extras,
    }


async def stream_once(client: httpx.AsyncClient, payload: dict[str, Any]) -> StreamResult:
    result = StreamResult(sent=time.perf_counter(), requested=payload["max_tokens"])
    async with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        if response.status_code != 200:
            body = (await response.aread()).decode(errors="replace")
            raise BenchError(f"/v1/chat/completions answered {response.status_code}: {body[:500]}")
        decoder = SseDecoder()
        async for line in response.aiter_lines():
            data = decoder.feed(line)
            if data == "[DONE]":
                break
            if data is not None:
                result.add(parse_chunk(json.loads(data)), time.perf_counter())
    result.ended = time.perf_counter()
    return result


async def run_level(client: httpx.AsyncClient, payloads: Sequence[dict[str, Any]]) -> LevelResult:
    started = time.perf_counter()
    streams = await asyncio.gather(*(stream_once(client, p) for p in payloads))
    return LevelResult(started=started, streams=tuple(streams))


async def measure(base_url: str, model_id: str, cfg: BenchConfig, spec: ServerSpec) -> ServerRun:
    extras = spec.request_extras(cfg)
    tags = itertools.count(1)

    def payloads(count: int, max_tokens: int = cfg.max_tokens) -> list[dict[str, Any]]:
        return [
            chat_payload(
                model_id,
                max_tokens,
                chat_messages(next(tags) if cfg.cold_prompts else None),
                extras,
            )
            for _ in range(count)
        ]

    run = ServerRun()
    timeout = httpx.Timeout(cfg.request_timeout, connect=10.0)
    limits = httpx.Limits(max_connections=max(LEVELS) + 2)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=timeout, limits=limits, trust_env=False
    ) as client:
        await run_level(client, payloads(1, min(cfg.max_tokens, 16)))  # warm-up, not recorded
        for round_no in range(1, cfg.repeat + 1):
            levels = []
            for concurrency in LEVELS:
                levels.append(await run_level(client, payloads(concurrency)))
                rate = levels[-1].aggregate_rate
                progress(
                    f"  round {round_no}/{cfg.repeat}, {concurrency} stream(s): {rate:.1f} tok/s"
                )
            run.add_round(levels, cfg.max_tokens)
    return run


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_server(side: str, cfg: BenchConfig) -> ServerRun:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    argv = SERVERS[side].command(cfg, port)
    log = LOG_DIR / f"{side}.log"
    progress(f"{LABELS[side]}: {shlex.join(argv)}  (log: {log})")
    with running_server(argv, base_url, log, cfg.startup_timeout) as model_id:
        return asyncio.run(measure(base_url, model_id, cfg, SERVERS[side]))


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog='Pass flags that start with a dash as --llama-args="--flag value".',
    )
    parser.add_argument("--model", type=Path, help="GGUF file (default: pampero's default model)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n-ctx", type=int, default=2048, help="context per sequence")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the median is reported")
    parser.add_argument(
        "--cold-prompts",
        action="store_true",
        help="give every request a distinct system line, so TTFT includes the whole prefill",
    )
    parser.add_argument("--only", choices=sorted(SERVERS), help="benchmark one server alone")
    parser.add_argument("--llama-args", default="", help="extra llama_cpp.server flags")
    parser.add_argument("--pampero-args", default="", help="extra pampero serve flags")
    parser.add_argument("--write", type=Path, help="rewrite this markdown file's section")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--request-timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    if args.max_tokens < 2 or args.repeat < 1 or args.threads < 1:
        parser.error("--max-tokens must be at least 2, --repeat and --threads at least 1")
    # finish_reason "length" must mean max_tokens, never a full context.
    if args.max_tokens + PROMPT_ROOM > args.n_ctx:
        parser.error(f"--n-ctx must leave {PROMPT_ROOM} tokens for the prompt above --max-tokens")
    return args


PROMPT_MODES = {
    False: f"the same for every request (a server may reuse its cached prefix): “{PROMPT}”",
    True: f"a distinct system line per request (`--cold-prompts`), then: “{PROMPT}”",
}
FIXED_LENGTH: dict[str, Callable[[BenchConfig], str]] = {
    BASELINE: lambda cfg: (
        f"{LABELS[BASELINE]}: `logit_bias` -100 on end-of-generation tokens "
        f"{', '.join(map(str, cfg.eog_ids))}"
    ),
    CANDIDATE: lambda cfg: f"{LABELS[CANDIDATE]}: `ignore_eos`",
}


def setup_rows(cfg: BenchConfig, sides: Sequence[str]) -> list[tuple[str, str]]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    passed = {side: shlex.join(cfg.extra_args[side]) for side in sides if cfg.extra_args[side]}
    rows = [
        ("command", f"`{shlex.join(sys.orig_argv)}`"),
        ("date", now),
        ("machine", f"{cpu_model()}, {os.cpu_count()} cores, {platform.machine()}"),
        ("model", f"`{cfg.model.name}`, sha256 `{sha256_of(cfg.model)}`"),
        ("threads, n_ctx", f"{cfg.threads} threads (prefill and decode), n_ctx {cfg.n_ctx}"),
        ("prompt", PROMPT_MODES[cfg.cold_prompts]),
        (
            "requests",
            f"max_tokens {cfg.max_tokens}, temperature {TEMPERATURE}, top_p {TOP_P}, "
            f"no seed, {cfg.repeat} round(s) after 1 warm-up request",
        ),
        ("fixed length", "; ".join(FIXED_LENGTH[side](cfg) for side in sides)),
        ("versions", software_versions()),
    ]
    rows += [(f"{LABELS[side]} extra flags", f"`{flags}`") for side, flags in passed.items()]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sides = [args.only] if args.only else [BASELINE, CANDIDATE]
    model = (args.model or default_model()).resolve()
    cfg = BenchConfig(
        model=model, threads=args.threads, n_ctx=args.n_ctx, max_tokens=args.max_tokens,
        repeat=args.repeat, startup_timeout=args.startup_timeout,
        request_timeout=args.request_timeout, cold_prompts=args.cold_prompts,
        eog_ids=tuple(end_of_generation_ids(model)) if BASELINE in sides else (),
        extra_args={BASELINE: shlex.split(args.llama_args),
                    CANDIDATE: shlex.split(args.pampero_args)},
    )  # fmt: skip
    setup = setup_rows(cfg, sides)
    try:
        runs = {side: bench_server(side, cfg) for side in sides}
    except (BenchError, httpx.HTTPError) as exc:
        print(f"bench_serving: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    report = render_report(runs, setup)
    print(report)
    if args.write:
        existing = args.write.read_text() if args.write.exists() else None
        args.write.write_text(replace_section(existing, report))
        progress(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
