"""Each tool-call format on its own: exactly what streams when, and the OpenAI shapes it maps to."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from pampero.parsers import ParsedDelta, ParsedMessage, ToolCallDelta, fold, new_call_id, parse_all
from pampero.parsers.base import ToolCall, ToolParser
from pampero.parsers.hermes import HermesToolParser
from pampero.parsers.llama3 import Llama3JsonToolParser
from pampero.parsers.mistral import MistralToolParser


def numbered() -> HermesToolParser:
    numbers = itertools.count()
    return HermesToolParser(id_factory=lambda: f"call_{next(numbers)}")


def stream(parser: ToolParser, chunks: list[str]) -> list[ParsedDelta]:
    return [parser.feed(chunk) for chunk in chunks] + [parser.finish()]


def test_hermes_streams_content_then_name_then_argument_fragments() -> None:
    deltas = stream(
        numbered(),
        [
            "Let me check.\n<tool_",
            'call>\n{"name": "get_',
            'weather", "arguments": {"city": "Pa',
            'ris", "unit": "c',
            'elsius"}}\n</tool_call>\n',
        ],
    )
    assert deltas == [
        ParsedDelta(content="Let me check."),
        ParsedDelta(),
        ParsedDelta(tool_calls=[ToolCallDelta(0, "call_0", "get_weather", '{"city": "Pa')]),
        ParsedDelta(tool_calls=[ToolCallDelta(0, arguments='ris", "unit": "c')]),
        ParsedDelta(tool_calls=[ToolCallDelta(0, arguments='elsius"}')]),
        ParsedDelta(),
    ]


def test_hermes_parallel_calls_get_consecutive_indices_and_distinct_ids() -> None:
    text = (
        '<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {"y": 2}}\n</tool_call>'
    )
    parser = HermesToolParser()
    deltas = [parser.feed(ch) for ch in text] + [parser.finish()]
    starts = [p for d in deltas for p in d.tool_calls if p.id is not None]
    assert [(p.index, p.name) for p in starts] == [(0, "a"), (1, "b")]
    assert starts[0].id != starts[1].id
    assert parser.tool_calls_found
    assert fold(deltas).content == ""


def test_openai_shapes_of_deltas_and_calls() -> None:
    first = ToolCallDelta(0, "call_abc", "get_weather", "")
    later = ToolCallDelta(0, arguments='{"city"')
    assert first.to_openai() == {
        "index": 0,
        "id": "call_abc",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert later.to_openai() == {"index": 0, "function": {"arguments": '{"city"'}}
    call = ToolCall("call_abc", "get_weather", "{}")
    assert call.to_openai() == {
        "id": "call_abc",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"},
    }


def test_new_call_ids_look_like_openais() -> None:
    made = {new_call_id() for _ in range(200)}
    assert len(made) == 200
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", call_id) for call_id in made)


def test_fold_refuses_pieces_out_of_order() -> None:
    with pytest.raises(ValueError, match="without an id"):
        ParsedMessage().add(ParsedDelta(tool_calls=[ToolCallDelta(0, arguments="{}")]))
    with pytest.raises(ValueError, match="out of order"):
        ParsedMessage().add(ParsedDelta(tool_calls=[ToolCallDelta(1, "call_x", "f")]))


def test_fragments_merge_within_a_delta() -> None:
    delta = ParsedDelta()
    delta.add_call_delta(ToolCallDelta(0, "call_x", "f"))
    delta.add_call_delta(ToolCallDelta(0, arguments='{"a"'))
    delta.add_call_delta(ToolCallDelta(0, arguments=": 1}"))
    delta.add_call_delta(ToolCallDelta(0, arguments=""))
    assert delta.tool_calls == [ToolCallDelta(0, "call_x", "f", '{"a": 1}')]


def test_whitespace_next_to_calls_is_not_content_but_plain_text_keeps_its_own() -> None:
    call = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    assert parse_all(HermesToolParser(), f"\n\n{call}\n\n{call}\n").content == ""
    assert parse_all(HermesToolParser(), f"A.\n\n{call}\n\nB.\n").content == "A.\n\nB."
    assert parse_all(HermesToolParser(), "  Plain.\n\n").content == "  Plain.\n\n"


def test_hermes_whitespace_before_a_tag_that_is_not_a_call_is_kept() -> None:
    text = "Use this: <tool_call> tag"
    assert parse_all(HermesToolParser(), text).content == text


def test_llama3_a_json_answer_streams_as_content_once_it_is_clearly_not_a_call() -> None:
    parser = Llama3JsonToolParser()
    assert parser.feed('{"answ') == ParsedDelta()
    assert parser.feed('er": 4') == ParsedDelta(content='{"answer": 4')
    assert parser.feed("2}") == ParsedDelta(content="2}")
    assert parser.finish() == ParsedDelta()
    assert not parser.tool_calls_found


def test_llama3_a_call_is_confirmed_by_its_parameters_key() -> None:
    numbers = itertools.count()
    parser = Llama3JsonToolParser(id_factory=lambda: f"call_{next(numbers)}")
    assert parser.feed('{"name": "get_weather", ') == ParsedDelta()
    assert parser.feed('"parameters": {"city": "Paris"') == ParsedDelta(
        tool_calls=[ToolCallDelta(0, "call_0", "get_weather", '{"city": "Paris"')]
    )
    assert parser.feed("}}") == ParsedDelta(tool_calls=[ToolCallDelta(0, arguments="}")])


def test_mistral_v11_name_goes_out_whole_when_its_arguments_start() -> None:
    numbers = itertools.count()
    parser = MistralToolParser(id_factory=lambda: f"call_{next(numbers)}")
    assert parser.feed("[TOOL_CALLS]get_wea") == ParsedDelta()
    assert parser.feed("ther[CALL_") == ParsedDelta()
    assert parser.feed('ID]q1w2e3r4t[ARGS]{"city": "Par') == ParsedDelta(
        tool_calls=[ToolCallDelta(0, "call_0", "get_weather", '{"city": "Par')]
    )
    assert parser.feed('is"}') == ParsedDelta(tool_calls=[ToolCallDelta(0, arguments='is"}')])
    assert parser.finish() == ParsedDelta()


def test_mistral_ids_the_model_wrote_are_not_used() -> None:
    text = '[TOOL_CALLS] [{"name": "f", "arguments": {}, "id": "abcDEF123"}]'
    (call,) = parse_all(MistralToolParser(), text).tool_calls
    assert call.id.startswith("call_") and "abcDEF123" not in call.id


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "f", "arguments": {"code": "'
        + "x = 1\\n" * 400
        + '"}}\n</tool_call>',
        '{"name": "f", "parameters": {"rows": [' + ", ".join(["[1, 2, 3]"] * 300) + "]}}",
        "[TOOL_CALLS]f[ARGS]{" + ", ".join(f'"k{i}": "{"v" * 10}"' for i in range(300)) + "}",
    ],
)
def test_long_arguments_stream_with_a_bounded_lag(text: str) -> None:
    parser: ToolParser
    if text.startswith("<tool_call>"):
        parser = HermesToolParser()
    elif text.startswith("[TOOL_CALLS]"):
        parser = MistralToolParser()
    else:
        parser = Llama3JsonToolParser()
    start = re.search(r'"arguments": |"parameters": |\[ARGS\]', text).end()  # type: ignore[union-attr]
    handed = 0
    worst = 0
    for fed, ch in enumerate(text, start=1):
        handed += sum(len(p.arguments) for p in parser.feed(ch).tool_calls)
        if start < fed <= len(text) - 16:  # within the arguments
            worst = max(worst, fed - start - handed)
    assert worst <= 16  # a key waits for its value; nothing else waits


def test_a_lone_surrogate_escape_does_not_reach_decoded_text() -> None:
    text = '<tool_call>{"name": "f\\ud83d", "arguments": "{\\"a\\": \\"\\\\ud83d'
    (call,) = parse_all(HermesToolParser(), text).tool_calls
    assert call.name == "f?"
    (call.name + call.arguments).encode("utf-8")
    assert call.arguments == '{"a": "\\ud83d'  # cut off: the string's text so far


def test_hermes_reads_a_bare_call_object_that_begins_the_output() -> None:
    # Qwen2.5-Coder-0.5B under tool_choice "auto" answers with the object and no tags.
    text = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}'
    message = parse_all(numbered(), text)
    assert message.content == ""
    assert [(c.name, c.arguments) for c in message.tool_calls] == [
        ("get_weather", '{"city": "Paris", "unit": "c"}')
    ]
    chunked = fold(stream(numbered(), [text[i : i + 3] for i in range(0, len(text), 3)]))
    assert chunked == message


@pytest.mark.parametrize(
    "text",
    [
        '{"answer": 42, "name": "x"}',  # JSON that is not a call stays content
        'Here: {"name": "f", "arguments": {}}',  # a call object after prose is not bare
        '  \n{"arguments": {}, "name": "f"}',  # strict form only: name first
    ],
)
def test_hermes_json_that_is_not_a_bare_call_stays_content(text: str) -> None:
    message = parse_all(numbered(), text)
    assert message.tool_calls == []
    assert message.content == text


def test_hermes_reads_a_bare_call_inside_a_markdown_fence() -> None:
    text = (
        '```json\n{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Paris"\n  }\n}\n```'
    )
    message = parse_all(numbered(), text)
    assert message.content == ""
    assert [c.name for c in message.tool_calls] == ["get_weather"]
    assert json.loads(message.tool_calls[0].arguments) == {"city": "Paris"}
    for size in (1, 2, 5):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert fold(stream(numbered(), chunks)) == message
    assert parse_all(numbered(), "```json\n[1, 2]\n```").content == "```json\n[1, 2]\n```"
