"""Structured outputs, measured through a real pampero server on the default model.

Five tables in one run:

1. **Per-token mask cost** of each backend's matcher alone (p50/p99 of ``fill_allowed`` +
   ``accept`` over the default model's vocabulary, ``bench_constraints.py``), in this process
   before the server starts.
2. **Decode speed under a JSON Schema** against unconstrained decoding, same prompt, same
   length (``min_tokens`` = ``max_tokens`` for the unconstrained run), for every backend.
3. **JSONSchemaBench coverage**: for a fixed, seeded sample of each split's schemas, each schema
   is sent unmodified as ``response_format: {"type": "json_schema", ...}`` (without ``strict``,
   OpenAI's default, unless ``--strict``) with the backend named in ``guided_decoding_backend``.
   *Declared coverage* is the share the server accepted (anything but a 400: a 422, an output
   that failed the check after generation, is accepted and not compliant); *compliance* is the
   share whose output parses as JSON and validates under JSON Schema Draft 2020-12 with format
   checking. An output cut by ``max_tokens`` counts as a failure.
4. **Time per token under each schema**: every coverage request is streamed, and the gaps
   between its content deltas are pooled per split (p50/p99, and the worst schema's p99);
   beside them, the same prompts unconstrained at the same concurrency, each held to the
   length of its constrained answer (so both see the same share of steps that carry another
   request's prompt chunk). An answer checked after
   generation arrives at once, so its time per token is its whole time over its tokens.
5. **Time per token one request at a time** (``--alone`` schemas per split, up to 128 tokens
   each, then the same prompt unconstrained at the same length, nothing else running): the
   pooled p99 of table 4 is the step that carries another request's prompt chunk (about a
   second on two cores), whichever request it lands on; alone, each gap is one decode step plus
   the schema's own mask, which is what the schema costs.

    .venv/bin/python benchmarks/bench_structured.py --per-split 30 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_constraints
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

BACKENDS = ("guidance", "xgrammar", "outlines", "lm-format-enforcer")
# ``auto`` (the default: the first backend that can express each schema) and each one alone.
COVERAGE_BACKENDS = ("auto", *BACKENDS)
SPLITS = (
    "Github_easy",
    "Github_trivial",
    "Glaiveai2K",
    "Snowplow",
    "WashingtonPost",
    "Github_medium",
    "Github_hard",
)
DATA = Path("/work/shared/data/jsonschemabench")
MARKERS = ("<!-- bench_structured:start -->", "<!-- bench_structured:end -->")
OUTPUTS = REPO_ROOT / ".bench" / "structured-outputs.jsonl"  # every answer of the last run

SPEED_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "year": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "summary": {"type": "string"},
    },
    "required": ["title", "year", "tags", "summary"],
}
SPEED_PROMPT = "Describe a made-up film as JSON with a title, a year, tags and a long summary."


@dataclass
class Coverage:
    sent: int = 0
    accepted: int = 0
    compliant: int = 0
    truncated: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    gaps: list[float] = field(default_factory=list)  # seconds between content deltas
    worst_p99: float = 0.0  # the slowest schema's p99 gap
    free_gaps: list[float] = field(default_factory=list)  # the same prompts, unconstrained
    # One request at a time (no other request's prompt chunk in any step): what a token costs
    # under the schema, and unconstrained at the same length.
    alone_gaps: list[float] = field(default_factory=list)
    alone_free_gaps: list[float] = field(default_factory=list)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sample(split: str, per_split: int, seed: int) -> list[Path]:
    files = sorted((DATA / split).glob("*.json"))
    random.Random(f"{seed}:{split}").shuffle(files)
    return files[:per_split]


def schema_prompt(schema: dict[str, Any], salt: str = "") -> list[dict[str, str]]:
    """The prompt for ``schema``. A ``salt`` changes its first tokens, so that the prefix
    cache cannot serve it from an earlier request with the same schema."""
    text = json.dumps(schema)[:6000]
    return [
        {"role": "system", "content": f"{salt}You answer with JSON only."},
        {"role": "user", "content": f"Produce one JSON value that satisfies this schema:\n{text}"},
    ]


def compliant(text: str, schema: dict[str, Any]) -> bool:
    try:
        value = json.loads(text)
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        validator.validate(value)
    except (ValueError, jsonschema.ValidationError, jsonschema.SchemaError):
        return False
    except Exception:  # a schema the validator itself cannot handle counts as a failure
        return False
    return True


@dataclass
class Outcome:
    status: str  # "accepted" or "refused:<code>"
    compliant: bool = False
    truncated: bool = False
    gaps: list[float] = field(default_factory=list)
    text: str = ""  # the answer, kept in OUTPUTS to read what went wrong
    finish: Any = None
    tokens: int = 0


async def streamed(client: httpx.AsyncClient, payload: dict[str, Any]) -> tuple[int, str, Any, int]:
    """(status, content, finish_reason or error body, completion tokens) of one streamed chat,
    and the gaps between its content deltas in ``payload["_gaps"]``."""
    body = {k: v for k, v in payload.items() if k != "_gaps"}
    body |= {"stream": True, "stream_options": {"include_usage": True}}
    gaps: list[float] = payload["_gaps"]
    started = time.perf_counter()
    text, finish, last, tokens = [], None, 0.0, 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            return response.status_code, "", json.loads(await response.aread()), 0
        checked = "x-pampero-schema-checked-after" in response.headers
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                piece = choice["delta"].get("content")
                if piece:
                    now = time.perf_counter()
                    if last and not checked:
                        gaps.append(now - last)
                    last = now
                    text.append(piece)
                finish = choice.get("finish_reason") or finish
    if checked and tokens:
        gaps.extend([(time.perf_counter() - started) / tokens] * tokens)
    return 200, "".join(text), finish, tokens


async def one_schema(
    client: httpx.AsyncClient,
    model: str,
    backend: str,
    path: Path,
    max_tokens: int,
    strict: bool,
) -> Outcome:
    schema = json.loads(path.read_text())
    spec: dict[str, Any] = {"name": "bench", "schema": schema}
    if strict:
        spec["strict"] = True
    outcome = Outcome("accepted")
    payload = {
        "model": model,
        "messages": schema_prompt(schema),
        "max_tokens": max_tokens,
        "temperature": 0,
        "guided_decoding_backend": backend,
        "response_format": {"type": "json_schema", "json_schema": spec},
        "_gaps": outcome.gaps,
    }
    status, text, finish, tokens = await streamed(client, payload)
    outcome.text, outcome.finish, outcome.tokens = text, finish, tokens
    if status == 422:  # served, then failed the check after generation: not compliant
        return outcome
    if status != 200:
        code = finish.get("error", {}).get("code") or str(status)
        return Outcome(f"refused:{code}", finish=finish)
    outcome.truncated = finish == "length"
    outcome.compliant = not outcome.truncated and compliant(text, schema)
    return outcome


async def unconstrained_gaps(
    client: httpx.AsyncClient, model: str, path: Path, tokens: int
) -> list[float]:
    gaps: list[float] = []
    schema = json.loads(path.read_text())
    # Salted: the constrained request just sent the same prompt, and a cached prompt would
    # spare the baseline the steps that carry a prompt chunk (table 4's p99).
    payload = {
        "model": model,
        "messages": schema_prompt(schema, salt="Baseline. "),
        "max_tokens": tokens,
        "min_tokens": tokens,
        "temperature": 0,
        "_gaps": gaps,
    }
    await streamed(client, payload)
    return gaps


async def coverage(
    base_url: str,
    model: str,
    per_split: int,
    seed: int,
    max_tokens: int,
    concurrency: int,
    backends: tuple[str, ...],
    strict: bool,
    splits: tuple[str, ...] = SPLITS,
    baseline: bool = True,
    alone: int = 0,
) -> dict[tuple[str, str], Coverage]:
    results: dict[tuple[str, str], Coverage] = {}
    limit = asyncio.Semaphore(concurrency)
    records: list[str] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=900, trust_env=False) as client:

        async def run(backend: str, split: str, path: Path) -> int:
            async with limit:
                outcome = await one_schema(client, model, backend, path, max_tokens, strict)
            cell = results.setdefault((backend, split), Coverage())
            record: dict[str, Any] = {"backend": backend, "split": split, "schema": path.name}
            record |= {"status": outcome.status, "compliant": outcome.compliant}
            record |= {"finish": outcome.finish, "text": outcome.text}
            records.append(json.dumps(record) + "\n")
            cell.sent += 1
            if outcome.status == "accepted":
                cell.accepted += 1
                cell.compliant += outcome.compliant
                cell.truncated += outcome.truncated
                cell.gaps += outcome.gaps
                cell.worst_p99 = max(cell.worst_p99, quantile(outcome.gaps, 0.99))
            else:
                cell.refusals[outcome.status] = cell.refusals.get(outcome.status, 0) + 1
                print(f"{backend} {split} {path.name}: {outcome.status}", file=sys.stderr)
            return outcome.tokens

        async def free(path: Path, tokens: int) -> list[float]:
            async with limit:
                return await unconstrained_gaps(client, model, path, tokens)

        for split in splits:
            files = sample(split, per_split, seed)
            lengths: list[int] = []
            for backend in backends:
                started = time.monotonic()
                tokens = await asyncio.gather(*(run(backend, split, f) for f in files))
                lengths = lengths or list(tokens)
                cell = results[(backend, split)]
                print(
                    f"{backend:<20} {split:<15} accepted {cell.accepted}/{cell.sent} "
                    f"compliant {cell.compliant} p99 {quantile(cell.gaps, 0.99) * 1000:.0f} ms "
                    f"({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
            # The same prompts, unconstrained, each held to the length of the first backend's
            # answer: the same mix of decode steps and other requests' prefill chunks.
            free_gaps = []
            if baseline:
                held = [max(n, 2) if n else 64 for n in lengths]
                runs = (free(f, n) for f, n in zip(files, held, strict=True))
                free_gaps = [g for gaps in await asyncio.gather(*runs) for g in gaps]
            for backend in backends:
                results[(backend, split)].free_gaps = free_gaps
            print(
                f"{'unconstrained':<20} {split:<15} p99 {quantile(free_gaps, 0.99) * 1000:.0f} ms",
                file=sys.stderr,
            )
            for backend in backends:
                cell = results[(backend, split)]
                for path in files[:alone]:
                    constrained, plain = await alone_gaps(client, model, backend, path, strict)
                    cell.alone_gaps += constrained
                    cell.alone_free_gaps += plain
                if alone:
                    print(
                        f"{backend:<20} {split:<15} alone p99 "
                        f"{quantile(cell.alone_gaps, 0.99) * 1000:.0f} ms, unconstrained "
                        f"{quantile(cell.alone_free_gaps, 0.99) * 1000:.0f} ms",
                        file=sys.stderr,
                    )
    OUTPUTS.parent.mkdir(exist_ok=True)
    OUTPUTS.write_text("".join(records))
    return results


ALONE_TOKENS = 128  # per request of the one-at-a-time pass


async def alone_gaps(
    client: httpx.AsyncClient, model: str, backend: str, path: Path, strict: bool
) -> tuple[list[float], list[float]]:
    """The gaps of one constrained answer with no other request running, and of the same
    prompt unconstrained, held to the same length (both empty if it was refused or short)."""
    outcome = await one_schema(client, model, backend, path, ALONE_TOKENS, strict)
    if outcome.status != "accepted" or outcome.tokens < 3:
        return [], []
    return outcome.gaps, await unconstrained_gaps(client, model, path, outcome.tokens)


async def _stream_rate(client: httpx.AsyncClient, payload: dict[str, Any]) -> float:
    """Decode tokens/s of one streamed request: (tokens - 1) / (first to last content delta)."""
    body = {**payload, "stream": True, "stream_options": {"include_usage": True}}
    first = last = 0.0
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if any(c["delta"].get("content") for c in chunk.get("choices", [])):
                last = time.perf_counter()
                first = first or last
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


async def decode_speed(base_url: str, model: str, max_tokens: int) -> dict[str, float]:
    """Decode tokens/s of one stream, unconstrained and under each backend (median of 3)."""
    speeds: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=900, trust_env=False) as client:
        base = {
            "model": model,
            "messages": [{"role": "user", "content": SPEED_PROMPT}],
            "max_tokens": max_tokens,
            "temperature": 0.7,
            "seed": 7,
        }
        variants: list[tuple[str, dict[str, Any]]] = [("unconstrained", {"min_tokens": max_tokens})]
        for backend in BACKENDS:
            variants.append(
                (backend, {"guided_json": SPEED_SCHEMA, "guided_decoding_backend": backend})
            )
        for name, extra in variants:
            await client.post("/v1/chat/completions", json={**base, **extra, "max_tokens": 4})
            rates = [await _stream_rate(client, {**base, **extra}) for _ in range(3)]
            speeds[name] = statistics.median(rates)
    return speeds


def render(
    masks: str,
    speeds: dict[str, float],
    cover: dict[tuple[str, str], Coverage],
    setup: list[tuple[str, str]],
    backends: tuple[str, ...],
) -> str:
    lines = ["| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in setup]
    if masks:
        lines += ["", "**Per-token mask cost** (matcher alone, `fill_allowed` + `accept`):", ""]
        lines.append(masks.rstrip("\n"))
    if speeds:
        lines += [
            "",
            "**Decode speed under a JSON Schema** (one stream; tokens/s from the first to the "
            "last content delta, median of 3):",
            "",
        ]
        lines += ["| decoding | tok/s | vs unconstrained |", "| --- | ---: | ---: |"]
        free = speeds.get("unconstrained", 0.0)
        for name, rate in speeds.items():
            ratio = f"{rate / free:.2f}x" if free else "—"
            lines.append(f"| {name} | {rate:.1f} | {ratio} |")
    lines += [
        "",
        "**JSONSchemaBench** (declared coverage / compliance / cut by max_tokens, share of the "
        "sample; a cut output is the model looping or rambling inside the schema):",
        "",
    ]
    shown = [split for split in SPLITS if any((b, split) in cover for b in backends)]
    lines.append("| backend | " + " | ".join(shown) + " |")
    lines.append("| --- |" + " ---: |" * len(shown))
    for backend in backends:
        cells = []
        for split in shown:
            cell = cover.get((backend, split))
            if cell is None or not cell.sent:
                cells.append("—")
                continue
            cells.append(
                f"{cell.accepted / cell.sent:.2f} / {cell.compliant / cell.sent:.2f} / "
                f"{cell.truncated / cell.sent:.2f}"
            )
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "**Time per token under the schemas** (ms between content deltas, pooled per split; "
        "unconstrained: the same prompts, same concurrency):",
        "",
        "| backend | split | p50 | p99 | worst schema p99 | unconstrained p50 | "
        "unconstrained p99 | p99 vs unconstrained |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend in backends:
        for split in shown:
            cell = cover.get((backend, split))
            if cell is None or not cell.gaps:
                continue
            p50, p99, free50, free99, ratio = _gap_cells(cell.gaps, cell.free_gaps, 0)
            worst = f"{cell.worst_p99 * 1000:.0f}"
            row = [backend, split, p50, p99, worst, free50, free99, ratio]
            lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"**Time per token, one request at a time** (the first schemas of each split, up to "
        f"{ALONE_TOKENS} tokens, nothing else running, so no step carries another request's "
        "prompt chunk: the cost of the schema itself; unconstrained: the same prompt held to the "
        "same length):",
        "",
        "| backend | split | gaps | p50 | p99 | unconstrained p50 | unconstrained p99 | "
        "p99 vs unconstrained |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend in backends:
        for split in shown:
            cell = cover.get((backend, split))
            if cell is None or not cell.alone_gaps:
                continue
            cells = _gap_cells(cell.alone_gaps, cell.alone_free_gaps, 1)
            row = [backend, split, str(len(cell.alone_gaps)), *cells]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _gap_cells(gaps: list[float], free: list[float], digits: int) -> list[str]:
    """p50, p99, unconstrained p50, unconstrained p99 (ms) and the p99 ratio, as table cells."""
    p99, free99 = quantile(gaps, 0.99), quantile(free, 0.99)
    ms = [quantile(gaps, 0.5), p99, quantile(free, 0.5), free99]
    ratio = f"{p99 / free99:.2f}x" if free99 else "—"
    return [f"{value * 1000:.{digits}f}" for value in ms] + [ratio]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: the default model)")
    parser.add_argument("--per-split", type=int, default=30, help="schemas sampled per split")
    parser.add_argument("--seed", type=int, default=0)
    # Github_hard's documents run to 1,400-2,100 tokens on the default model (gov.uk content
    # items, author records): a smaller budget measures the budget, not the constraint.
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--speed-tokens", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mask-repeat", type=int, default=5, help="walks per mask-cost cell")
    parser.add_argument(
        "--backends",
        default=",".join(COVERAGE_BACKENDS),
        help="comma-separated backends for the coverage tables (default: auto and each one)",
    )
    parser.add_argument(
        "--splits",
        default=",".join(SPLITS),
        help="comma-separated JSONSchemaBench splits to measure (default: all)",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the unconstrained run of each split's prompts (table 4's baseline columns)",
    )
    parser.add_argument(
        "--alone",
        type=int,
        default=8,
        help="schemas per split whose time per token is also measured one request at a time",
    )
    parser.add_argument("--strict", action="store_true", help="send strict: true")
    parser.add_argument("--skip-speed", action="store_true", help="skip tables 1 and 2")
    parser.add_argument("--write", type=Path, help="rewrite this markdown file's section")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = args.model or default_model()
    backends = tuple(args.backends.split(","))
    splits = tuple(args.splits.split(","))
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise SystemExit(f"unknown split(s) {', '.join(unknown)}; known: {', '.join(SPLITS)}")
    masks = ""
    if not args.skip_speed:
        vocabulary = bench_constraints.default_vocabulary()
        masks = bench_constraints.render(bench_constraints.measure(vocabulary, args.mask_repeat))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "pampero", "serve", "--model", str(model), "--port", str(port),
        "--threads", str(args.threads), "--n-ctx", str(args.max_tokens + 4096),
        "--max-seqs", str(args.concurrency),
    ]  # fmt: skip
    log = REPO_ROOT / ".bench" / "structured-server.log"
    with running_server(command, base_url, log, 300) as model_id:
        speeds: dict[str, float] = {}
        if not args.skip_speed:
            speeds = asyncio.run(decode_speed(base_url, model_id, args.speed_tokens))
        cover = asyncio.run(
            coverage(
                base_url,
                model_id,
                args.per_split,
                args.seed,
                args.max_tokens,
                args.concurrency,
                backends,
                args.strict,
                splits,
                not args.no_baseline,
                args.alone,
            )
        )
    setup = [
        ("command", f"`{' '.join(['benchmarks/bench_structured.py', *(argv or sys.argv[1:])])}`"),
        ("date", time.strftime("%Y-%m-%d")),
        ("machine", f"{cpu_model()}, {args.threads} threads"),
        ("software", software_versions()),
        ("sample", f"{args.per_split} schemas per split (seed {args.seed}), max_tokens "
                   f"{args.max_tokens}, temperature 0, "
                   f"{'strict: true' if args.strict else 'no strict (OpenAI default)'}"),
        ("load average at the end", " ".join(f"{x:.1f}" for x in os.getloadavg())),
    ]  # fmt: skip
    report = render(masks, speeds, cover, setup, backends)
    print(report)
    if args.write:
        document = args.write.read_text() if args.write.exists() else None
        args.write.write_text(replace_section(document, report, markers=MARKERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
