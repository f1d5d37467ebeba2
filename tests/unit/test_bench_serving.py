"""The pure parts of benchmarks/bench_serving.py: SSE decoding, token accounting, the report."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench_scripts import load_bench

bench = load_bench("bench_serving")


def _feed_all(lines: list[str]) -> list[str]:
    decoder = bench.SseDecoder()
    return [data for line in lines if (data := decoder.feed(line)) is not None]


def _stream(tokens: int, *, first: float, step: float, finish: str = "length") -> Any:
    """A stream sent at 0 whose one-token deltas arrive every ``step`` from ``first``."""
    result = bench.StreamResult(sent=0.0, requested=tokens)
    for i in range(tokens):
        result.add(bench.Chunk("x", None, None), first + i * step)
    result.ended = first + tokens * step
    result.add(bench.Chunk("", finish, None), result.ended)
    return result


def test_sse_decoder_yields_one_payload_per_event_and_skips_comments() -> None:
    lines = [
        ": ping - 2024-01-01",
        "",
        'data: {"a": 1}',
        "",
        "event: message",
        "data:first",
        "data: second",
        "",
        "data: [DONE]",
        "",
    ]
    assert _feed_all(lines) == ['{"a": 1}', "first\nsecond", "[DONE]"]


def test_parse_chunk_reads_content_finish_reason_and_usage() -> None:
    role_only = {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
    assert bench.parse_chunk(role_only) == bench.Chunk("", None, None)
    content = {"choices": [{"delta": {"content": "def"}, "finish_reason": None}], "usage": None}
    assert bench.parse_chunk(content) == bench.Chunk("def", None, None)
    usage = {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 128}}
    assert bench.parse_chunk(usage) == bench.Chunk("", None, 128)


def test_parse_chunk_raises_on_an_in_band_error() -> None:
    with pytest.raises(bench.BenchError, match="overloaded"):
        bench.parse_chunk({"error": {"message": "overloaded", "type": "server_error"}})


def test_stream_result_times_first_token_and_decode_rate() -> None:
    result = bench.StreamResult(sent=10.0, requested=5)
    result.add(bench.Chunk("", None, None), 10.1)  # the role delta is not a token
    for i in range(5):
        result.add(bench.Chunk("tok", None, None), 10.5 + i * 0.25)
    result.add(bench.Chunk("", "length", None), 11.6)
    assert result.ttft == pytest.approx(0.5)
    assert result.tokens == 5
    assert result.decode_rate == pytest.approx(4 / 1.0)


def test_tokens_prefer_usage_then_length_then_content_deltas() -> None:
    with_usage = bench.StreamResult(sent=0.0, requested=8)
    with_usage.add(bench.Chunk("ab", "length", None), 1.0)
    with_usage.add(bench.Chunk("", None, 7), 1.1)
    assert with_usage.tokens == 7

    # One delta may carry several tokens of a multi-byte character: "length" is the exact count.
    capped = bench.StreamResult(sent=0.0, requested=8)
    capped.add(bench.Chunk(" 🌟", None, None), 1.0)
    capped.add(bench.Chunk("", "length", None), 1.1)
    assert capped.tokens == 8

    stopped = bench.StreamResult(sent=0.0, requested=8)
    stopped.add(bench.Chunk("hi", None, None), 1.0)
    stopped.add(bench.Chunk("", "stop", None), 1.1)
    assert stopped.tokens == 1


def test_a_stream_without_content_cannot_be_timed() -> None:
    empty = bench.StreamResult(sent=0.0, requested=4)
    empty.add(bench.Chunk("", "stop", None), 1.0)
    with pytest.raises(bench.BenchError):
        _ = empty.ttft


def test_aggregate_rate_spans_first_send_to_last_byte() -> None:
    streams = (_stream(4, first=1.0, step=0.5), _stream(4, first=2.0, step=1.0))
    level = bench.LevelResult(started=0.0, streams=streams)
    assert level.aggregate_rate == pytest.approx(8 / 6.0)
    assert level.short_streams(4) == []
    assert level.short_streams(5) == list(streams)


def test_server_run_takes_medians_and_flags_short_levels() -> None:
    run = bench.ServerRun()
    for rate_step in (0.1, 0.2, 0.05):
        single = bench.LevelResult(0.0, (_stream(4, first=1.0, step=rate_step),))
        run.add_round([single], max_tokens=4)
    assert run.medians()["decode@1"] == pytest.approx(3 / 0.3)
    assert run.flagged == set()

    short = bench.LevelResult(0.0, (_stream(2, first=1.0, step=0.1, finish="stop"),))
    run.add_round([short], max_tokens=4)
    assert run.flagged == {"ttft@1", "agg@1", "decode@1"}
    assert run.notes == ["round 4, 1 stream(s): 1 produced other than 4 tokens: 2 (stop)"]


def _run_with(values: dict[str, float]) -> Any:
    run = bench.ServerRun()
    run.rounds.append(values)
    return run


def _all_metrics(scale: float) -> dict[str, float]:
    return {row.key: scale for row in bench.ROWS}


def test_table_shows_both_servers_and_their_ratio() -> None:
    baseline = _run_with(_all_metrics(20.0))
    candidate = _run_with(_all_metrics(45.0))
    candidate.flagged.add("agg@8")
    table = bench.render_table({"llama_cpp": baseline, "pampero": candidate})
    lines = table.splitlines()
    assert lines[0].startswith("| metric | llama_cpp.server | pampero |")
    assert "| decode tok/s, 1 stream | 20.0 | 45.0 | 2.25x |" in lines
    assert "| aggregate tok/s, 8 stream(s) | 20.0 | 45.0 † | 2.25x |" in lines
    assert len(lines) == 2 + len(bench.ROWS)


def test_table_and_targets_with_one_server_leave_the_rest_blank() -> None:
    runs = {"llama_cpp": _run_with(_all_metrics(20.0))}
    assert "| TTFT, 1 stream (ms) | 20 | — | — |" in bench.render_table(runs).splitlines()
    assert bench.render_targets(runs).count("not measured") == 2


def test_targets_say_which_are_met() -> None:
    baseline = _run_with(_all_metrics(20.0))
    candidate = _run_with({**_all_metrics(20.0), "decode@1": 18.0, "agg@8": 50.0})
    targets = bench.render_targets({"llama_cpp": baseline, "pampero": candidate})
    assert "single-stream decode >= 0.95x: 0.90x, NOT met" in targets
    assert "aggregate at 8 streams >= 2.0x: 2.50x, met" in targets


def test_replace_section_creates_replaces_and_appends() -> None:
    created = bench.replace_section(None, "figures v1")
    assert created.startswith("# Benchmarks")
    assert f"{bench.SECTION_START}\nfigures v1\n{bench.SECTION_END}\n" in created

    edited = created.replace("# Benchmarks", "# Benchmarks (edited by hand)") + "\nAfter.\n"
    replaced = bench.replace_section(edited, "figures v2\n")
    assert "figures v1" not in replaced
    assert "figures v2" in replaced
    assert replaced.startswith("# Benchmarks (edited by hand)")
    assert replaced.endswith("\nAfter.\n")

    appended = bench.replace_section("# Notes\n", "figures v3")
    assert appended == f"# Notes\n\n{bench.SECTION_START}\nfigures v3\n{bench.SECTION_END}\n"
