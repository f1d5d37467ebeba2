"""The pure parts of benchmarks/bench_bfcl.py: the proxy's rewrite and how responses are judged."""

from __future__ import annotations

import json
from typing import Any

from tests.bench_scripts import load_bench

bench = load_bench("bench_bfcl")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "area",
            "parameters": {
                "type": "object",
                "properties": {"base": {"type": "integer"}, "height": {"type": "integer"}},
                "required": ["base", "height"],
            },
        },
    }
]


def _exchange(message: dict[str, Any], finish: str = "stop", status: int = 200) -> dict[str, Any]:
    response = {"choices": [{"message": message, "finish_reason": finish}]}
    return {"request": {"tools": TOOLS}, "status": status, "response": response}


def _call(name: str, arguments: Any) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"type": "function", "function": {"name": name, "arguments": text}}


def test_the_proxy_sets_tool_choice_and_the_served_model() -> None:
    proxy = bench.ToolChoiceProxy("http://127.0.0.1:1", "served", "required", 64)
    body = proxy.rewrite({"model": "openbmb/x", "tools": TOOLS, "messages": []})
    assert (body["model"], body["tool_choice"], body["max_tokens"]) == ("served", "required", 64)
    kept = proxy.rewrite({"model": "x", "messages": [], "max_tokens": 9})
    assert "tool_choice" not in kept and kept["max_tokens"] == 9


def test_a_valid_call_counts_as_a_call() -> None:
    tally = bench.classify(_exchange({"tool_calls": [_call("area", {"base": 2, "height": 3})]}))
    assert (tally.calls, tally.off_schema, tally.parse_failures) == (1, 0, 0)


def test_arguments_that_are_not_json_are_a_parse_failure() -> None:
    tally = bench.classify(_exchange({"tool_calls": [_call("area", '{"base": 2,')]}))
    assert (tally.calls, tally.bad_json, tally.parse_failures) == (0, 1, 1)


def test_markup_left_in_the_text_is_an_unparsed_call() -> None:
    text = '<tool_call>\n{"name": "area", "arguments": {"base": 1}'
    tally = bench.classify(_exchange({"content": text}, finish="length"))
    assert (tally.unparsed, tally.truncated, tally.text) == (1, 1, 0)


def test_off_schema_and_repeated_calls() -> None:
    calls = [_call("area", {"base": "2"}), _call("area", {"base": "2"})]
    tally = bench.classify(_exchange({"tool_calls": calls}, finish="length"))
    assert (tally.off_schema, tally.off_schema_cut, tally.repeats) == (1, 1, 1)
    unknown = bench.classify(_exchange({"tool_calls": [_call("volume", {})]}))
    assert unknown.off_schema == 1


def test_plain_text_and_errors() -> None:
    total = bench.tally_of([_exchange({"content": "The area is 6."}), _exchange({}, status=400)])
    assert (total.responses, total.text, total.errors) == (2, 1, 1)


def test_the_report_has_a_row_per_category_and_mode() -> None:
    tallies = {c: bench.Tally(responses=2, calls=2) for c in bench.CATEGORIES}
    scores = {c: {"accuracy": 0.5, "correct_count": 1, "total_count": 2} for c in bench.CATEGORIES}
    results = [bench.ModeResult(mode, tallies, scores, 60.0) for mode in bench.TOOL_CHOICES]
    report = bench.render(results, [("date", "today")])
    rows = [line for line in report.splitlines() if line.startswith("| simple_python")]
    assert len(rows) == len(bench.TOOL_CHOICES)
    assert "| 50.0% |" in rows[0] and "| 0.0% (0) |" in rows[0]
