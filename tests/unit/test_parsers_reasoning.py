"""``<think>`` reasoning: where the output starts, the request's switches, and the pipeline that
parses tool calls in both the reasoning and the content."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from pampero.chat import ChatTemplate
from pampero.parsers import (
    OutputParser,
    ParsedDelta,
    ToolCallDelta,
    create_output_parser,
    parse_all,
    tool_parser,
)
from pampero.parsers.base import ReasoningParser, ReasoningParserFactory
from pampero.parsers.think import DeepSeekR1ReasoningParser, ThinkReasoningParser

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "templates"
USER = [{"role": "user", "content": "Weather in Paris?"}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def counting() -> OutputParser:
    numbers = itertools.count()
    return create_output_parser(
        tool_parser_name="hermes",
        reasoning_parser_name="think",
        id_factory=lambda: f"call_{next(numbers)}",
    )


def test_reasoning_streams_as_it_is_written() -> None:
    parser = ThinkReasoningParser()
    chunks = ["<th", "ink>\n", "The user", " wants\n", "\nsnow.\n</th", "ink>\n\n", "Snow", "."]
    assert [parser.feed(chunk) for chunk in chunks] + [parser.finish()] == [
        ParsedDelta(),
        ParsedDelta(),
        ParsedDelta(reasoning="The user"),
        ParsedDelta(reasoning=" wants"),
        ParsedDelta(reasoning="\n\nsnow."),
        ParsedDelta(),
        ParsedDelta(content="Snow"),
        ParsedDelta(content="."),
        ParsedDelta(),
    ]


def test_the_prompt_opened_the_reasoning() -> None:
    parser = ThinkReasoningParser(starts_in_reasoning=True)
    message = parse_all(parser, "Hmm.\n</think>\n\nFour.")
    assert (message.reasoning, message.content) == ("Hmm.", "Four.")
    cut_off = parse_all(ThinkReasoningParser(starts_in_reasoning=True), "Hmm, still")
    assert (cut_off.reasoning, cut_off.content) == ("Hmm, still", "")


def test_thinking_disabled_leaves_everything_as_content() -> None:
    text = "<think>x</think>Four."
    message = parse_all(ThinkReasoningParser(enabled=False), text)
    assert (message.reasoning, message.content) == ("", text)


def test_include_reasoning_false_drops_the_reasoning_not_into_content() -> None:
    message = parse_all(ThinkReasoningParser(include_reasoning=False), "<think>x</think>Four.")
    assert (message.reasoning, message.content) == ("", "Four.")


def render(fixture: str, **kwargs: object) -> str:
    template = ChatTemplate((TEMPLATES / fixture).read_text(), eos_token="<|im_end|>")
    return template.render(USER, template_kwargs=kwargs).text


@pytest.mark.parametrize(
    ("prompt", "enable_thinking", "output", "reasoning", "content"),
    [
        # Qwen3's template: the model writes <think> itself...
        (render("qwen3.jinja"), None, "<think>\nHm.\n</think>\n\nSun.", "Hm.", "Sun."),
        # ...and with enable_thinking=false the template closes an empty block in the prompt.
        (
            render("qwen3.jinja", enable_thinking=False),
            None,
            "<think>stray</think>Sun.",
            "",
            "<think>stray</think>Sun.",
        ),
        (render("qwen3.jinja"), False, "Sun.", "", "Sun."),
        # A template that opens <think> in the prompt (DeepSeek-R1, QwQ): the prompt wins.
        ("<|im_start|>assistant\n<think>\n", False, "Hm.\n</think>\n\nSun.", "Hm.", "Sun."),
        # A model that does not reason at all.
        (render("qwen2.5.jinja"), None, "Sun.", "", "Sun."),
    ],
)
def test_for_prompt(
    prompt: str, enable_thinking: bool | None, output: str, reasoning: str, content: str
) -> None:
    parser = ThinkReasoningParser.for_prompt(prompt, enable_thinking=enable_thinking)
    message = parse_all(parser, output)
    assert (message.reasoning, message.content) == (reasoning, content)


def test_deepseek_r1_thinks_from_its_first_token() -> None:
    parser = DeepSeekR1ReasoningParser.for_prompt("<｜Assistant｜>")
    message = parse_all(parser, "Hm.\n</think>\n\nSun.")
    assert (message.reasoning, message.content) == ("Hm.", "Sun.")
    off = DeepSeekR1ReasoningParser.for_prompt("<｜Assistant｜>", enable_thinking=False)
    assert parse_all(off, "Sun.").content == "Sun."


def test_reasoning_parser_classes_are_factories() -> None:
    factories: list[ReasoningParserFactory] = [ThinkReasoningParser, DeepSeekR1ReasoningParser]
    for factory in factories:
        assert isinstance(factory(), ReasoningParser)
        assert isinstance(factory.for_prompt(""), ReasoningParser)


def test_a_call_inside_the_reasoning_is_a_call_and_leaves_the_reasoning() -> None:
    parser = counting()
    deltas = [
        parser.feed("<think>\nI will look it up.\n"),
        parser.feed(CALL),
        parser.feed("\n</think>\n\nChecking."),
        parser.finish(),
    ]
    assert deltas == [
        ParsedDelta(reasoning="I will look it up."),
        ParsedDelta(tool_calls=[ToolCallDelta(0, "call_0", "get_weather", '{"city": "Paris"}')]),
        ParsedDelta(content="Checking."),
        ParsedDelta(),
    ]
    assert parser.tool_calls_found


def test_calls_from_the_reasoning_are_numbered_before_the_contents() -> None:
    other = CALL.replace("get_weather", "get_time").replace('"city": "Paris"', "")
    message = parse_all(counting(), f"<think>{CALL}</think>\n\n{other}\n{CALL}")
    assert [(c.id, c.name) for c in message.tool_calls] == [
        ("call_0", "get_weather"),
        ("call_1", "get_time"),
        ("call_2", "get_weather"),
    ]


def test_dropping_the_reasoning_keeps_its_calls() -> None:
    parser = create_output_parser(
        tool_parser_name="hermes", reasoning_parser_name="think", include_reasoning=False
    )
    message = parse_all(parser, f"<think>\nLet me check.\n{CALL}\n</think>\n\nOn it.")
    assert message.reasoning == ""
    assert message.content == "On it."
    assert [c.name for c in message.tool_calls] == ["get_weather"]


def test_without_parsers_text_passes_through() -> None:
    parser = create_output_parser()
    text = f"<think>x</think>{CALL}"
    assert parser.feed(text) == ParsedDelta(content=text)
    assert parser.finish() == ParsedDelta()
    assert not parser.tool_calls_found


def test_tools_without_reasoning() -> None:
    parser = OutputParser(tools=tool_parser("hermes"))
    message = parse_all(parser, f"<think>x</think>{CALL}")
    assert message.content == "<think>x</think>"
    assert [c.name for c in message.tool_calls] == ["get_weather"]


def test_a_prompt_with_thinking_disabled_parses_calls_in_content() -> None:
    prompt = render("qwen3.jinja", enable_thinking=False)
    parser = create_output_parser(
        tool_parser_name="hermes", reasoning_parser_name="think", prompt=prompt
    )
    message = parse_all(parser, f"Sure.\n{CALL}")
    assert (message.reasoning, message.content) == ("", "Sure.")
    assert len(message.tool_calls) == 1
