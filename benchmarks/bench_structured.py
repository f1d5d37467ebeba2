"""Structured outputs, measured through a real pampero server on the default model.

Three tables in one run:

1. **Per-token mask cost** of each backend's matcher alone (p50/p99 of ``fill_allowed`` +
   ``accept`` over the default model's vocabulary, ``bench_constraints.py``), in this process
   before the server starts.
2. **Decode speed under a JSON Schema** against unconstrained decoding, same prompt, same
   length (``min_tokens`` = ``max_tokens`` for the unconstrained run), for every backend.
3. **JSONSchemaBench coverage**: for a fixed, seeded sample of each split's schemas, each schema
   is sent unmodified as ``response_format: {"type": "json_schema", ...}`` with the backend named
   in ``guided_decoding_backend``. *Declared coverage* is the share the server accepted (200, not
   400); *compliance* is the share whose output parses as JSON and validates under JSON Schema
   Draft 2020-12 with format checking. An output cut by ``max_tokens`` counts as a failure.

    .venv/bin/python benchmarks/bench_structured.py --per-split 30 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
SPLITS = ("Github_easy", "Github_trivial", "Glaiveai2K", "Snowplow", "WashingtonPost")
DATA = Path("/work/shared/data/jsonschemabench")
MARKERS = ("<!-- bench_structured:start -->", "<!-- bench_structured:end -->")

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


def sample(split: str, per_split: int, seed: int) -> list[Path]:
    files = sorted((DATA / split).glob("*.json"))
    random.Random(f"{seed}:{split}").shuffle(files)
    return files[:per_split]


def schema_prompt(schema: dict[str, Any]) -> list[dict[str, str]]:
    text = json.dumps(schema)[:6000]
    return [
        {"role": "system", "content": "You answer with JSON only."},
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


async def one_schema(
    client: httpx.AsyncClient, model: str, backend: str, path: Path, max_tokens: int
) -> tuple[str, bool, bool]:
    """(status, compliant, truncated) for one schema."""
    schema = json.loads(path.read_text())
    payload = {
        "model": model,
        "messages": schema_prompt(schema),
        "max_tokens": max_tokens,
        "temperature": 0,
        "guided_decoding_backend": backend,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "bench", "schema": schema, "strict": True},
        },
    }
    response = await client.post("/v1/chat/completions", json=payload)
    if response.status_code != 200:
        code = response.json().get("error", {}).get("code") or str(response.status_code)
        return f"refused:{code}", False, False
    choice = response.json()["choices"][0]
    truncated = choice["finish_reason"] == "length"
    ok = not truncated and compliant(choice["message"]["content"] or "", schema)
    return "accepted", ok, truncated


async def coverage(
    base_url: str, model: str, per_split: int, seed: int, max_tokens: int, concurrency: int
) -> dict[tuple[str, str], Coverage]:
    results: dict[tuple[str, str], Coverage] = {}
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=900, trust_env=False) as client:

        async def run(backend: str, split: str, path: Path) -> None:
            async with limit:
                status, ok, cut = await one_schema(client, model, backend, path, max_tokens)
            cell = results.setdefault((backend, split), Coverage())
            cell.sent += 1
            if status == "accepted":
                cell.accepted += 1
                cell.compliant += ok
                cell.truncated += cut
            else:
                cell.refusals[status] = cell.refusals.get(status, 0) + 1

        for backend in COVERAGE_BACKENDS:
            for split in SPLITS:
                files = sample(split, per_split, seed)
                started = time.monotonic()
                await asyncio.gather(*(run(backend, split, f) for f in files))
                cell = results[(backend, split)]
                print(
                    f"{backend:<20} {split:<15} accepted {cell.accepted}/{cell.sent} "
                    f"compliant {cell.compliant} ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
    return results


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
) -> str:
    lines = ["| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in setup]
    lines += ["", "**Per-token mask cost** (matcher alone, `fill_allowed` + `accept`):", ""]
    lines.append(masks.rstrip("\n"))
    lines += [
        "",
        "**Decode speed under a JSON Schema** (one stream; tokens/s from the first to the last "
        "content delta, median of 3):",
        "",
    ]
    lines += ["| decoding | tok/s | vs unconstrained |", "| --- | ---: | ---: |"]
    free = speeds.get("unconstrained", 0.0)
    for name, rate in speeds.items():
        ratio = f"{rate / free:.2f}x" if free else "—"
        lines.append(f"| {name} | {rate:.1f} | {ratio} |")
    lines += ["", "**JSONSchemaBench** (declared coverage / compliance, share of the sample):", ""]
    lines.append("| backend | " + " | ".join(SPLITS) + " |")
    lines.append("| --- |" + " ---: |" * len(SPLITS))
    for backend in COVERAGE_BACKENDS:
        cells = []
        for split in SPLITS:
            cell = cover.get((backend, split))
            if cell is None or not cell.sent:
                cells.append("—")
                continue
            cells.append(f"{cell.accepted / cell.sent:.2f} / {cell.compliant / cell.sent:.2f}")
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: the default model)")
    parser.add_argument("--per-split", type=int, default=30, help="schemas sampled per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--speed-tokens", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mask-repeat", type=int, default=5, help="walks per mask-cost cell")
    parser.add_argument("--write", type=Path, help="rewrite this markdown file's section")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = args.model or default_model()
    vocabulary = bench_constraints.default_vocabulary()
    masks = bench_constraints.render(bench_constraints.measure(vocabulary, args.mask_repeat))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "pampero", "serve", "--model", str(model), "--port", str(port),
        "--threads", str(args.threads), "--n-ctx", "4096", "--max-seqs", str(args.concurrency),
    ]  # fmt: skip
    log = REPO_ROOT / ".bench" / "structured-server.log"
    with running_server(command, base_url, log, 300) as model_id:
        speeds = asyncio.run(decode_speed(base_url, model_id, args.speed_tokens))
        cover = asyncio.run(
            coverage(
                base_url, model_id, args.per_split, args.seed, args.max_tokens, args.concurrency
            )
        )
    setup = [
        ("command", f"`{' '.join(['benchmarks/bench_structured.py', *(argv or sys.argv[1:])])}`"),
        ("date", time.strftime("%Y-%m-%d")),
        ("machine", f"{cpu_model()}, {args.threads} threads"),
        ("software", software_versions()),
        ("sample", f"{args.per_split} schemas per split (seed {args.seed}), max_tokens "
                   f"{args.max_tokens}, temperature 0"),
    ]  # fmt: skip
    report = render(masks, speeds, cover, setup)
    print(report)
    if args.write:
        document = args.write.read_text() if args.write.exists() else None
        args.write.write_text(replace_section(document, report, markers=MARKERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
