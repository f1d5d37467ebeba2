"""Per-token cost of each constraint backend's matcher: ``fill_allowed`` + ``accept``, p50/p99.

Walks every backend over the default model's vocabulary (Qwen2.5, 151,936 tokens) through a
JSON Schema, a regex, a choice and (where supported) a GBNF grammar, choosing at each step the
allowed token that continues a fixed target text (else the first allowed one), and times each
step. Also reports compile time (in-process, warm vocabulary).

    .venv/bin/python benchmarks/bench_constraints.py [--repeat 5] [--backends xgrammar,guidance]

``bench_structured.py`` runs the same measurement and writes it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pampero.assets import ensure_default_model
from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.compiler import compile_in_process
from pampero.constraints.registry import BackendRegistry
from pampero.constraints.vocab import vocabulary_from_tokenizer
from pampero.engines.llamacpp.tokenizer import load_vocab_only
from pampero.settings import default_home

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "email": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "email", "tags"],
}
WORKLOADS = {
    "json_schema": (
        ConstraintSpec(kind="json_schema", value=json.dumps(SCHEMA), param="guided_json"),
        '{"name": "Ada Lovelace", "age": 36, "email": "ada@example.com", '
        '"tags": ["math", "engines", "poetry"]}',
    ),
    "regex": (
        ConstraintSpec(kind="regex", value=r"[a-z]+(\.[a-z]+)*@[a-z]+\.(com|org)", param="r"),
        "first.middle.last@example.org",
    ),
    "choice": (
        ConstraintSpec(kind="choice", value=("positive", "negative", "neutral"), param="c"),
        "negative",
    ),
    "gbnf": (
        ConstraintSpec(
            kind="grammar",
            value='root ::= item ("," item)*\nitem ::= [a-z]+ "=" [0-9]+',
            param="g",
            grammar_syntax="gbnf",
        ),
        "alpha=1,beta=22,gamma=333,delta=4444",
    ),
}


def _lookup(vocabulary: ConstraintVocabulary) -> dict[bytes, int]:
    closed = vocabulary.special_ids | vocabulary.eos_ids
    found: dict[bytes, int] = {}
    for i, piece in enumerate(vocabulary.pieces):
        if piece and i not in closed:
            found.setdefault(piece, i)
    return found


def walk(
    compiled: object, vocabulary: ConstraintVocabulary, lookup: dict[bytes, int], target: str
) -> list[float]:
    """Seconds per step (fill_allowed + accept) for one walk towards ``target``."""
    matcher = compiled.new_matcher()  # type: ignore[attr-defined]
    mask = np.zeros(vocabulary.size, dtype=np.bool_)
    remaining = target.encode()
    eos = sorted(vocabulary.eos_ids)
    steps: list[float] = []
    for _ in range(500):
        started = time.perf_counter()
        matcher.fill_allowed(mask)
        token = -1
        for n in range(min(len(remaining), 32), 0, -1):
            candidate = lookup.get(remaining[:n])
            if candidate is not None and mask[candidate]:
                token = candidate
                break
        if token < 0:
            token = next((e for e in eos if mask[e]), int(np.flatnonzero(mask)[0]))
        matcher.accept(token)
        done = token in vocabulary.eos_ids or matcher.is_terminated()
        steps.append(time.perf_counter() - started)
        if done:
            break
        piece = vocabulary.pieces[token]
        remaining = remaining[len(piece) :] if remaining.startswith(piece) else b""
    return steps


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@dataclass
class MaskCost:
    """One backend on one workload: compile time and per-step matcher cost."""

    backend: str
    workload: str
    compile_ms: float
    steps: int
    p50_us: float
    p99_us: float
    mean_us: float


def default_vocabulary() -> ConstraintVocabulary:
    """The default model's vocabulary, read from its GGUF (assembled first if missing)."""
    home = Path(os.environ["PAMPERO_HOME"]) if os.environ.get("PAMPERO_HOME") else default_home()
    return vocabulary_from_tokenizer(load_vocab_only(ensure_default_model(home)))


def measure(
    vocabulary: ConstraintVocabulary, repeat: int, names: list[str] | None = None
) -> list[MaskCost]:
    """Every backend (or ``names``) over every workload it supports, ``repeat`` walks each."""
    lookup = _lookup(vocabulary)
    registry = BackendRegistry()
    rows: list[MaskCost] = []
    for name in names or registry.available():
        backend = registry.backend(name)
        backend.prepare(vocabulary)
        for workload, (spec, target) in WORKLOADS.items():
            if backend.unsupported(spec) is not None:
                continue
            started = time.perf_counter()
            compiled = compile_in_process(backend, spec, vocabulary)
            compile_ms = 1000 * (time.perf_counter() - started)
            walks = [walk(compiled, vocabulary, lookup, target) for _ in range(repeat)]
            steps = [step for one in walks for step in one]
            rows.append(
                MaskCost(
                    backend=name,
                    workload=workload,
                    compile_ms=compile_ms,
                    steps=len(walks[0]),
                    p50_us=1e6 * _percentile(steps, 50),
                    p99_us=1e6 * _percentile(steps, 99),
                    mean_us=1e6 * statistics.fmean(steps),
                )
            )
    return rows


def render(rows: list[MaskCost]) -> str:
    """A markdown table of ``measure``'s rows."""
    lines = [
        "| backend | workload | compile ms | steps | p50 µs | p99 µs | mean µs |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row.backend} | {row.workload} | {row.compile_ms:.1f} | {row.steps} | "
            f"{row.p50_us:.0f} | {row.p99_us:.0f} | {row.mean_us:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="walks per backend and workload")
    parser.add_argument("--backends", default="", help="comma-separated names (default: all)")
    args = parser.parse_args()
    vocabulary = default_vocabulary()
    print(f"vocabulary: {vocabulary.size} tokens; {args.repeat} walks per cell")
    names = [n for n in args.backends.split(",") if n] or None
    print(render(measure(vocabulary, args.repeat, names)))


if __name__ == "__main__":
    main()
