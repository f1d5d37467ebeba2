"""Per-token cost of each constraint backend's matcher: ``fill_allowed`` + ``accept``, p50/p99.

Walks every backend over the default model's vocabulary (Qwen2.5, 151,936 tokens) through a
JSON Schema, a regex, a choice and (where supported) a GBNF grammar, choosing at each step the
allowed token that continues a fixed target text (else the first allowed one), and times each
step. Also reports compile time (in-process, warm vocabulary).

    .venv/bin/python benchmarks/bench_constraints.py [--repeat 5] [--backends xgrammar,guidance]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="walks per backend and workload")
    parser.add_argument("--backends", default="", help="comma-separated names (default: all)")
    args = parser.parse_args()

    home = Path(os.environ["PAMPERO_HOME"]) if os.environ.get("PAMPERO_HOME") else default_home()
    vocabulary = vocabulary_from_tokenizer(load_vocab_only(ensure_default_model(home)))
    lookup = _lookup(vocabulary)
    registry = BackendRegistry()
    names = [n for n in args.backends.split(",") if n] or registry.available()

    print(f"vocabulary: {vocabulary.size} tokens; {args.repeat} walks per cell")
    print(
        f"{'backend':<20} {'workload':<12} {'compile ms':>10} {'steps':>6} "
        f"{'p50 us':>8} {'p99 us':>8} {'mean us':>8}"
    )
    for name in names:
        backend = registry.backend(name)
        started = time.perf_counter()
        backend.prepare(vocabulary)
        print(f"{name:<20} {'(vocabulary)':<12} {1000 * (time.perf_counter() - started):>10.0f}")
        for workload, (spec, target) in WORKLOADS.items():
            if backend.unsupported(spec) is not None:
                continue
            started = time.perf_counter()
            compiled = compile_in_process(backend, spec, vocabulary)
            compile_ms = 1000 * (time.perf_counter() - started)
            steps: list[float] = []
            walks = [walk(compiled, vocabulary, lookup, target) for _ in range(args.repeat)]
            for one in walks:
                steps.extend(one)
            print(
                f"{name:<20} {workload:<12} {compile_ms:>10.1f} {len(walks[0]):>6} "
                f"{1e6 * _percentile(steps, 50):>8.0f} {1e6 * _percentile(steps, 99):>8.0f} "
                f"{1e6 * statistics.fmean(steps):>8.0f}"
            )


if __name__ == "__main__":
    main()
