"""Every built-in tool format's grammars, compiled by llguidance over a byte vocabulary: what a
grammar lets a model write, the format's own parser reads back as the same calls, and what it
forbids (a repeat under a single call, arguments against the schema) it cannot be made to write.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pampero.constraints.backends.llguidance import GuidanceBackend
from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.parsers import parse_all, reasoning_parser, tool_parser

VOCABULARY = ConstraintVocabulary(
    "bytes", (*(bytes([i]) for i in range(256)), b""), frozenset(), frozenset({256}), 257
)
EOS = 256
WEATHER = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME = {"name": "get_time", "parameters": {"type": "object"}}
PARIS = '{"city": "Paris", "unit": "c"}'
ROME = '{"city": "Rome", "unit": "c"}'


def call(fmt: str, name: str, arguments: str) -> str:
    if fmt == "hermes":
        return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'
    return f'{{"name": "{name}", "parameters": {arguments}}}'


GAP = {"hermes": "\n", "llama3_json": "; "}
BACKEND = GuidanceBackend()


def accepts(grammar: str, text: str) -> bool:
    """Whether the grammar lets ``text`` be written in full and then end."""
    spec = ConstraintSpec(kind="grammar", value=grammar, param="tools", grammar_syntax="lark")
    compiled = BACKEND.load(BACKEND.compile(spec, VOCABULARY), spec, VOCABULARY)
    matcher = BACKEND.matcher(compiled)
    return all(matcher.accept(byte) for byte in text.encode()) and matcher.accept(EOS)


def calls_read(fmt: str, text: str) -> list[tuple[str, Any]]:
    message = parse_all(tool_parser(fmt)(), text)
    return [(c.name, json.loads(c.arguments)) for c in message.tool_calls]


@pytest.mark.parametrize("fmt", sorted(GAP))
def test_forced_grammars_write_what_the_parser_reads(fmt: str) -> None:
    factory = tool_parser(fmt)
    one = factory.call_rules([WEATHER, TIME], strict_only=False, parallel=False)
    several = factory.call_rules([WEATHER, TIME], strict_only=False, parallel=True)
    assert one is not None and several is not None
    first, second = call(fmt, "get_weather", PARIS), call(fmt, "get_time", "{}")
    both = first + GAP[fmt] + second
    assert accepts(f"start: calls\n{one}", first)
    assert not accepts(f"start: calls\n{one}", both)  # a single call means one
    assert accepts(f"start: calls\n{several}", both)
    assert calls_read(fmt, both) == [("get_weather", json.loads(PARIS)), ("get_time", {})]
    wrong = call(fmt, "get_weather", '{"city": "Paris"}')
    assert not accepts(f"start: calls\n{several}", wrong)  # "unit" is required
    assert not accepts(f"start: calls\n{several}", "Sure!")


PRETTY = (
    '{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Paris",\n    "unit": "c"\n  }\n}'
)


@pytest.mark.parametrize("parallel", [False, True])
def test_forced_hermes_calls_may_also_be_written_bare(parallel: bool) -> None:
    """Qwen2.5 often answers with a pretty-printed call object, fenced or not: a forced call may
    take that form too (the parser reads it as a call), with the same arguments enforced."""
    hermes = tool_parser("hermes")
    rules = hermes.call_rules([WEATHER, TIME], strict_only=False, parallel=parallel, bare=True)
    grammar = f"start: calls\n{rules}"
    fenced = f"```json\n{PRETTY}\n```"
    for text in (PRETTY, fenced, call("hermes", "get_weather", PARIS)):
        assert accepts(grammar, text), text
        assert calls_read("hermes", text) == [("get_weather", json.loads(PARIS))]
    assert not accepts(grammar, PRETTY.replace('"unit": "c"', '"unit": "k"'))
    assert not accepts(grammar, "Sure! " + PRETTY)
    two = PRETTY + "\n" + bare_object(call("hermes", "get_time", "{}"))
    assert accepts(grammar, two) == parallel
    if parallel:
        assert calls_read("hermes", two) == [("get_weather", json.loads(PARIS)), ("get_time", {})]
    plain = hermes.call_rules([WEATHER], strict_only=False, parallel=parallel)
    assert not accepts(f"start: calls\n{plain}", PRETTY)  # only when asked


@pytest.mark.parametrize("fmt", sorted(GAP))
def test_strict_call_grammars_bind_a_call_after_its_marker_and_bare(fmt: str) -> None:
    factory = tool_parser(fmt)
    start = factory.call_start
    assert start is not None and factory.bare_call_gap is not None
    opened = factory.call_grammar([WEATHER, TIME], opened=True)
    bare = factory.call_grammar([WEATHER, TIME], opened=False)
    assert opened is not None and bare is not None
    text = call(fmt, "get_weather", PARIS)
    after_marker = text.removeprefix(start) if text.startswith(start) else text
    assert accepts(opened, after_marker)
    body = bare_object(text)
    assert accepts(bare, body)
    assert not accepts(bare, body.replace('"unit": "c"', '"unit": "c", "x": 1'))
    assert accepts(bare, bare_object(call(fmt, "get_time", '{"anything": [1]}')))  # not strict


def bare_object(text: str) -> str:
    return text.removeprefix("<tool_call>\n").removesuffix("\n</tool_call>")


def test_a_format_without_grammars_says_so() -> None:
    mistral = tool_parser("mistral")
    assert mistral.call_rules([WEATHER], strict_only=False, parallel=True) is None
    assert mistral.call_grammar([WEATHER], opened=True) is None


@pytest.mark.parametrize("name", ["think", "qwen3", "deepseek_r1"])
def test_reasoning_parsers_declare_their_tags(name: str) -> None:
    parser = reasoning_parser(name)
    assert (parser.open_tag, parser.close_tag) == ("<think>", "</think>")
    assert parser.starts_open == (name == "deepseek_r1")
