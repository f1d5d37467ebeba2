"""The pure parts of benchmarks/bench_native.py: rounds in alternating order, medians."""

from __future__ import annotations

import os
from pathlib import Path

from tests.bench_scripts import load_bench

bench = load_bench("bench_native")


def test_rounds_alternate_the_order_and_report_each_figures_median() -> None:
    cfg = bench.Config(
        model=Path("m.gguf"), threads=2, n_ctx=64, max_seqs=2, max_tokens=8, repeat=1,
        conversations=1, turns=1, eog_ids=(0,),
    )  # fmt: skip
    order: list[str] = []

    def run(side: str, _cfg: object) -> dict[str, float]:
        order.append(side)
        figures = {"tok/s": float(len(order))}
        if side == "b":
            figures["only b"] = 7.0
        return figures

    results = bench.run_rounds(["a", "b", "c"], cfg, 3, run)
    assert order == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    # a ran 1st, 6th and 7th: its median is 6; b 2nd, 5th, 8th: 5; c 3rd, 4th, 9th: 4.
    assert results == {"a": {"tok/s": 6.0}, "b": {"tok/s": 5.0, "only b": 7.0}, "c": {"tok/s": 4.0}}


def test_paired_decode_starts_each_server_first_for_half_the_pairs(monkeypatch) -> None:
    cfg = bench.Config(
        model=Path("m.gguf"), threads=2, n_ctx=64, max_seqs=2, max_tokens=8, repeat=1,
        conversations=1, turns=1, eog_ids=(0,),
    )  # fmt: skip
    calls: list[tuple[tuple[str, str], int]] = []

    def half(
        _cfg: object, order: tuple[str, str], pairs: int, width: int
    ) -> dict[str, list[float]]:
        assert width == 1
        calls.append((order, pairs))
        # Whichever server starts first is 10% faster, in every pair.
        fast, slow = 55.0, 50.0
        first, _ = order
        return {
            first: [fast] * pairs,
            next(s for s in (bench.LLAMA_SERVER, bench.PAMPERO) if s != first): [slow] * pairs,
        }

    monkeypatch.setattr(bench, "_paired_half", half)
    report = bench.paired_decode(cfg, 5)
    pampero_first = (bench.PAMPERO, bench.LLAMA_SERVER)
    assert calls == [((bench.LLAMA_SERVER, bench.PAMPERO), 3), (pampero_first, 2)]
    # Three pairs at 50/55 and two at 55/50: the start order shows in each half.
    assert "median 0.909, " in report
    assert "llama-server started first: median 0.909 over 3" in report
    assert "pampero started first: median 1.100 over 2" in report


def test_memory_reads_the_server_and_its_workers() -> None:
    import subprocess
    import sys

    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        figures = bench.memory(os.getpid())
        assert worker.pid in bench.descendants(os.getpid())
        assert figures["RSS after the run, idle (MB)"] > 1.0
        assert figures["peak RSS under load (MB)"] >= figures["RSS after the run, idle (MB)"]
        assert figures["worker processes' RSS (MB)"] > 0.0
        assert bench.status_mb(worker.pid, "NoSuchField") == 0.0
    finally:
        worker.kill()
        worker.wait()
    assert bench.status_mb(worker.pid, "VmRSS") == 0.0  # gone
