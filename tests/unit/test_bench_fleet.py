"""The pure parts of benchmarks/bench_fleet.py: the workload's texts, figures, the report."""

from __future__ import annotations

import pytest

from tests.bench_scripts import load_bench

bench = load_bench("bench_fleet")


def test_openings_share_no_prefix_across_conversations_or_runs():
    a, b = bench.document(0, "n1", 4), bench.document(1, "n1", 4)
    again = bench.document(0, "n2", 4)
    assert a != b and a != again
    for other in (b, again):
        shared = next(i for i, (x, y) in enumerate(zip(a, other, strict=False)) if x != y)
        assert shared < len("Report n1-0")  # they part within the header


def test_percentile_is_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert bench.percentile(values, 50) == 3.0
    assert bench.percentile(values, 99) == 5.0
    assert bench.percentile(values, 1) == 1.0
    with pytest.raises(ValueError):
        bench.percentile([], 50)


def _result(routing: str, cached: int) -> object:
    samples = [bench.Sample(0.1 * (i + 1), 100, cached, 10) for i in range(4)]
    return bench.ColumnResult("smg", routing, samples, wall=8.0, per_node=[2, 1, 1])


def test_figures_of_a_column():
    figures = bench.column_figures(_result("cache_aware", 80))
    assert figures["cached-token ratio"] == "0.80"
    assert figures["TTFT p50 (ms)"] == "200"
    assert figures["TTFT p99 (ms)"] == "400"
    assert figures["throughput (completion tok/s)"] == "5.0"
    assert figures["requests per node"] == "2/1/1"


def test_table_has_one_column_per_policy():
    table = bench.render_table([_result("round_robin", 0), _result("cache_aware", 80)])
    lines = table.splitlines()
    assert lines[0] == "| metric | smg round_robin | smg cache_aware |"
    assert "| cached-token ratio | 0.00 | 0.80 |" in lines


def test_section_is_replaced_or_appended():
    doc = "# Benchmarks\n\nintro\n"
    once = bench.replace_section(doc, "first")
    assert once.endswith(f"{bench.SECTION_START}\nfirst\n{bench.SECTION_END}\n")
    twice = bench.replace_section(once + "\nafter\n", "second")
    assert "first" not in twice and "second" in twice and twice.endswith("\nafter\n")
    assert twice.startswith("# Benchmarks\n\nintro\n")


def test_columns_refuse_an_unknown_gateway():
    assert bench.parse_columns(["smg"], ["a", "b"]) == [("smg", "a"), ("smg", "b")]
    with pytest.raises(bench.BenchError, match="unknown gateway 'other'; known: pampero, smg"):
        bench.parse_columns(["other"], ["prefix"])
    with pytest.raises(bench.BenchError, match="names no known gateway"):
        bench.parse_columns(["smg"], ["other:prefix"])


def test_columns_per_gateway():
    both = ["smg", "pampero"]
    assert bench.parse_columns(both, ["smg:cache_aware", "pampero:prefix", "x"]) == [
        ("smg", "cache_aware"),
        ("smg", "x"),
        ("pampero", "prefix"),
        ("pampero", "x"),
    ]
    every = bench.parse_columns(both, [])
    assert ("smg", "cache_aware") in every and ("pampero", "prefix") in every
    assert ("pampero", "least-outstanding") in every and ("pampero", "cache_aware") not in every
    from pampero.gateway.policies import POLICIES

    assert set(bench.PAMPERO_POLICIES) <= set(POLICIES.available())
