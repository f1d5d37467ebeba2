"""BFCL tool-calling accuracy through pampero, with and without constrained tool calls.

The Berkeley Function Calling Leaderboard's own ``bfcl-eval`` generates and scores the answers.
Its pins clash with pampero's, so it lives in a virtualenv of its own (``.bench/bfcl-venv``, made
on first use). It talks to a real pampero server through its plain OpenAI Chat Completions
function-calling handler, pointed at a loopback proxy::

    .venv/bin/python benchmarks/bench_bfcl.py --write docs/benchmarks.md

Two configurations over the simple (Python), multiple and parallel categories:

- ``auto``: the model writes its calls freely and pampero's tool parser reads them;
- ``required``: pampero compiles the tools' schemas into a grammar, so every answer is a call
  whose arguments validate against them.

bfcl's handler sends no ``tool_choice``. The proxy sets it, replaces the model name (bfcl only
knows models by its own registry names) with the served id, caps ``max_tokens`` and keeps every
raw response: the parse-failure figures are counted from those, accuracy is bfcl's AST checker.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from bench_serving import (
    REPO_ROOT,
    cpu_model,
    default_model,
    free_port,
    replace_section,
    running_server,
    software_versions,
)

BFCL_VERSION = "2026.3.23"
BFCL_VENV = REPO_ROOT / ".bench" / "bfcl-venv"
WORK_DIR = REPO_ROOT / ".bench" / "bfcl"
CATEGORIES = ("simple_python", "multiple", "parallel")
TOOL_CHOICES = ("auto", "required")
# bfcl's one registry entry on its generic OpenAI Chat Completions FC handler, which reads
# OPENAI_BASE_URL and never downloads a tokenizer (the local-model handlers do).
BFCL_MODEL = "openbmb/MiniCPM-SALA-FC"
MARKERS = ("<!-- bench_bfcl:start -->", "<!-- bench_bfcl:end -->")
# Text that announces a call: Hermes markup, or a JSON object with a "name" key.
CALL_LIKE = re.compile(r'<tool_call>|\{\s*"name"\s*:')


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# bfcl itself


def bfcl_executable(venv: Path) -> Path:
    """``bfcl`` from its own virtualenv, installed there first if missing."""
    executable = venv / "bin" / "bfcl"
    if not executable.exists():
        progress(f"installing bfcl-eval=={BFCL_VERSION} into {venv}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        # qwen-agent, which bfcl imports at start-up, imports soundfile without depending on it.
        subprocess.run([*pip, f"bfcl-eval=={BFCL_VERSION}", "soundfile"], check=True)
    return executable


def dataset(venv: Path, category: str) -> list[dict[str, Any]]:
    """The test entries of a category, from the data bfcl ships in its wheel."""
    found = sorted(venv.glob(f"lib/python*/site-packages/bfcl_eval/data/BFCL_v4_{category}.json"))
    if not found:
        raise SystemExit(f"bench_bfcl: no data for {category!r} under {venv}")
    return [json.loads(line) for line in found[0].read_text().splitlines() if line.strip()]


def pick_ids(entries: list[dict[str, Any]], limit: int | None, seed: int | None) -> list[str]:
    """The first ``limit`` ids, or with a ``seed`` a seeded sample of ``limit`` ids."""
    ids = [entry["id"] for entry in entries]
    if seed is not None:
        random.Random(seed).shuffle(ids)
    return ids if limit is None else ids[:limit]


def bfcl_env(root: Path, base_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "BFCL_PROJECT_ROOT": str(root),
        "OPENAI_BASE_URL": f"{base_url}/v1",
        "OPENAI_API_KEY": "pampero-bench",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def run_bfcl(bfcl: Path, argv: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("a") as sink:
        sink.write(f"$ {shlex.join(['bfcl', *argv])}\n")
        sink.flush()
        done = subprocess.run([str(bfcl), *argv], env=env, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"bench_bfcl: bfcl {argv[0]} failed ({done.returncode}); see {log}")


def generate(
    bfcl: Path, root: Path, ids: dict[str, list[str]], env: dict[str, str], threads: int
) -> None:
    """``bfcl generate`` for exactly ``ids`` (its ``--run-ids`` file)."""
    (root / "test_case_ids_to_generate.json").write_text(json.dumps(ids, indent=1))
    argv = ["generate", "--model", BFCL_MODEL, "--run-ids", "--allow-overwrite"]
    run_bfcl(bfcl, [*argv, "--num-threads", str(threads)], env, root / "bfcl.log")


def evaluate(
    bfcl: Path, root: Path, env: dict[str, str], categories: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """bfcl's AST scores per category: ``accuracy``, ``correct_count``, ``total_count``."""
    argv = ["evaluate", "--model", BFCL_MODEL, "--test-category", ",".join(categories)]
    run_bfcl(bfcl, [*argv, "--partial-eval"], env, root / "bfcl.log")
    scores = {}
    for category in categories:
        path = next((root / "score").rglob(f"BFCL_v4_{category}_score.json"))
        scores[category] = json.loads(path.read_text().splitlines()[0])
    return scores


# ---------------------------------------------------------------------------------------------
# The proxy between bfcl and pampero


class ToolChoiceProxy:
    """Forwards bfcl's chat completions to pampero with ``tool_choice`` set, and keeps them.

    >>> proxy = ToolChoiceProxy("http://127.0.0.1:8000", "qwen", "required", 512)
    >>> proxy.rewrite({"model": "x", "tools": [], "messages": []})["tool_choice"]
    'required'
    """

    def __init__(self, upstream: str, model_id: str, tool_choice: str, max_tokens: int) -> None:
        self.upstream = upstream
        self.model_id = model_id
        self.tool_choice = tool_choice
        self.max_tokens = max_tokens
        self._exchanges: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def rewrite(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "model": self.model_id}
        body.setdefault("max_tokens", self.max_tokens)
        if "tools" in body:
            body["tool_choice"] = self.tool_choice
        return body

    def forward(self, client: httpx.Client, path: str, raw: bytes) -> httpx.Response:
        request = self.rewrite(json.loads(raw))
        response = client.post(path, json=request)
        try:
            reply: Any = response.json()
        except ValueError:
            reply = response.text
        with self._lock:
            self._exchanges.append(
                {"request": request, "status": response.status_code, "response": reply}
            )
        return response

    def take(self) -> list[dict[str, Any]]:
        """The exchanges since the last call, oldest first."""
        with self._lock:
            taken, self._exchanges = self._exchanges, []
        return taken

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        """Listen on a free loopback port until the block ends; yields the proxy's base URL."""
        client = httpx.Client(base_url=self.upstream, timeout=1800, trust_env=False)
        handler = type("Handler", (_ForwardHandler,), {"proxy": self, "client": client})
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            client.close()


class _ForwardHandler(BaseHTTPRequestHandler):
    proxy: ToolChoiceProxy
    client: httpx.Client
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        response = self.proxy.forward(self.client, self.path, raw)
        self.send_response(response.status_code)
        self.send_header("Content-Type", response.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(response.content)))
        self.end_headers()
        self.wfile.write(response.content)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: bfcl's own log says what was asked."""


# ---------------------------------------------------------------------------------------------
# Reading the raw responses (pure)


@dataclass
class Tally:
    """What the responses of one category looked like; every case expects at least one call."""

    responses: int = 0
    calls: int = 0  # a response with tool calls, all of them readable
    unparsed: int = 0  # no tool calls, but text that announces one: the parser could not read it
    bad_json: int = 0  # a tool call whose arguments are not a JSON object
    off_schema: int = 0  # a call to an unknown function, or arguments its schema rejects
    off_schema_cut: int = 0  # of those, responses stopped by max_tokens
    repeats: int = 0  # a call identical to an earlier one of the same response
    text: int = 0  # no tool calls and nothing that looks like one
    truncated: int = 0  # stopped by max_tokens
    errors: int = 0  # the server answered other than 200

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def parse_failures(self) -> int:
        return self.unparsed + self.bad_json


def _arguments(call: dict[str, Any]) -> dict[str, Any] | None:
    try:
        value = json.loads(call["function"]["arguments"])
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _fits(call: dict[str, Any], args: dict[str, Any], tools: list[dict[str, Any]]) -> bool:
    schemas = {t["function"]["name"]: t["function"].get("parameters", {}) for t in tools}
    schema = schemas.get(call["function"]["name"])
    return schema is not None and jsonschema.Draft202012Validator(schema).is_valid(args)


def _judge_calls(tally: Tally, calls: list[dict[str, Any]], tools: list[dict[str, Any]]) -> None:
    """Fill in ``tally`` for a response that did return tool calls."""
    parsed = [_arguments(call) for call in calls]
    readable = [(c, a) for c, a in zip(calls, parsed, strict=True) if a is not None]
    if len(readable) < len(calls):
        tally.bad_json = 1
        return
    tally.calls = 1
    tally.off_schema = int(not all(_fits(c, a, tools) for c, a in readable))
    tally.off_schema_cut = tally.off_schema * tally.truncated
    keys = [(c["function"]["name"], json.dumps(a, sort_keys=True)) for c, a in readable]
    tally.repeats = int(len(set(keys)) < len(keys))


def classify(exchange: dict[str, Any]) -> Tally:
    """One exchange as a tally with one outcome (plus ``truncated`` when it applies)."""
    if exchange["status"] != 200:
        return Tally(responses=1, errors=1)
    choice = exchange["response"]["choices"][0]
    message = choice["message"]
    tally = Tally(responses=1, truncated=int(choice.get("finish_reason") == "length"))
    if message.get("tool_calls"):
        _judge_calls(tally, message["tool_calls"], exchange["request"].get("tools", []))
    elif CALL_LIKE.search(message.get("content") or ""):
        tally.unparsed = 1
    else:
        tally.text = 1
    return tally


def tally_of(exchanges: Sequence[dict[str, Any]]) -> Tally:
    total = Tally()
    for exchange in exchanges:
        total.add(classify(exchange))
    return total


# ---------------------------------------------------------------------------------------------
# One configuration


@dataclass
class ModeResult:
    tool_choice: str
    tallies: dict[str, Tally]
    scores: dict[str, dict[str, Any]]
    seconds: float


def run_mode(
    bfcl: Path, tool_choice: str, ids: dict[str, list[str]], server: str, model_id: str,
    args: argparse.Namespace,
) -> ModeResult:  # fmt: skip
    root = WORK_DIR / tool_choice
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    proxy = ToolChoiceProxy(server, model_id, tool_choice, args.max_tokens)
    tallies = {}
    started = time.monotonic()
    with proxy.serving() as base_url:
        env = bfcl_env(root, base_url)
        for category in ids:
            begun = time.monotonic()
            generate(bfcl, root, {category: ids[category]}, env, args.max_seqs)
            exchanges = proxy.take()
            raw = "".join(json.dumps(e) + "\n" for e in exchanges)
            (root / f"{category}.raw.jsonl").write_text(raw)
            tallies[category] = tally_of(exchanges)
            progress(
                f"  {tool_choice:<8} {category:<13} {len(ids[category])} cases, "
                f"{tallies[category].parse_failures} parse failures "
                f"({time.monotonic() - begun:.0f} s)"
            )
        scores = evaluate(bfcl, root, env, list(ids))
    return ModeResult(tool_choice, tallies, scores, time.monotonic() - started)


# ---------------------------------------------------------------------------------------------
# Report (pure)


def _share(count: int, total: int) -> str:
    return f"{count / total:.1%} ({count})" if total else "—"


def _off_schema(t: Tally) -> str:
    cut = f", {t.off_schema_cut} cut" if t.off_schema_cut else ""
    return f"{_share(t.off_schema, t.responses)[:-1]}{cut})" if t.responses else "—"


def result_rows(result: ModeResult) -> list[str]:
    rows = []
    for category in result.tallies:
        t, score = result.tallies[category], result.scores[category]
        cells = [
            category, f"`{result.tool_choice}`", str(score["total_count"]),
            f"{score['accuracy']:.1%}", _share(t.parse_failures, t.responses),
            _off_schema(t), _share(t.repeats, t.responses), _share(t.text, t.responses),
            _share(t.truncated, t.responses), _share(t.errors, t.responses),
        ]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def render(results: Sequence[ModeResult], setup: Sequence[tuple[str, str]]) -> str:
    lines = [
        "| category | tool_choice | cases | AST accuracy | parse failures | args off-schema "
        "| repeated call | no call (text) | cut by max_tokens | HTTP errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for category_rows in zip(*(result_rows(r) for r in results), strict=True):
        lines += category_rows
    lines += ["", "| setup | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in setup)]
    return "\n".join(lines)


def setup_rows(
    args: argparse.Namespace, model: Path, ids: dict[str, list[str]], results: Sequence[ModeResult]
) -> list[tuple[str, str]]:
    chosen = "all" if args.limit is None else f"first {args.limit}"
    if args.seed is not None and args.limit is not None:
        chosen = f"{args.limit} sampled with seed {args.seed}"
    counts = ", ".join(f"{c} {len(ids[c])}" for c in ids)
    timing = ", ".join(f"`{r.tool_choice}` {r.seconds / 60:.0f} min" for r in results)
    return [
        ("command", f"`{shlex.join(sys.orig_argv)}`"),
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{cpu_model()}, {os.cpu_count()} cores"),
        ("model", f"`{model.name}`"),
        ("server", f"pampero, {args.threads} threads, n_ctx {args.n_ctx}, "
                   f"{args.max_seqs} sequences at once (bfcl `--num-threads {args.max_seqs}`)"),
        ("cases", f"{chosen} per category: {counts}"),
        ("requests", f"bfcl `{BFCL_MODEL}` handler (OpenAI Chat Completions FC), temperature "
                     f"0.001, max_tokens {args.max_tokens} (added by the proxy)"),
        ("run time", timing),
        ("versions", f"{software_versions()}, bfcl-eval {BFCL_VERSION}"),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: pampero's default model)")
    parser.add_argument("--limit", type=int, help="cases per category (default: all)")
    parser.add_argument("--seed", type=int, help="with --limit, a seeded sample, not the first N")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n-ctx", type=int, default=4096, help="context per sequence")
    parser.add_argument("--max-seqs", type=int, default=4, help="server batch and bfcl threads")
    parser.add_argument("--max-tokens", type=int, default=512, help="cap per response")
    parser.add_argument("--tool-choice", choices=TOOL_CHOICES, action="append",
                        help="run only this configuration (repeatable)")  # fmt: skip
    parser.add_argument("--category", choices=CATEGORIES, action="append",
                        help="run only this category (repeatable)")  # fmt: skip
    parser.add_argument("--venv", type=Path, default=BFCL_VENV, help="bfcl's own virtualenv")
    parser.add_argument("--write", type=Path, help="rewrite this markdown file's section")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bfcl = bfcl_executable(args.venv)
    model = (args.model or default_model()).resolve()
    categories = args.category or CATEGORIES
    ids = {c: pick_ids(dataset(args.venv, c), args.limit, args.seed) for c in categories}
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "pampero", "serve", "--model", str(model), "--port", str(port),
        "--threads", str(args.threads), "--n-ctx", str(args.n_ctx),
        "--max-seqs", str(args.max_seqs),
    ]  # fmt: skip
    with running_server(command, server, WORK_DIR / "server.log", 300) as model_id:
        results = [
            run_mode(bfcl, choice, ids, server, model_id, args)
            for choice in args.tool_choice or TOOL_CHOICES
        ]
    report = render(results, setup_rows(args, model, ids, results))
    print(report)
    if args.write:
        document = args.write.read_text() if args.write.exists() else None
        args.write.write_text(replace_section(document, report, markers=MARKERS))
        progress(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
