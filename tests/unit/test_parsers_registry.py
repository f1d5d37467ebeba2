"""Parsers by name, plugins through entry points, and the choice of parsers from a chat template,
checked against the templates in tests/fixtures: what a template writes for a call, its parser
reads back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from pampero.chat import ChatTemplate
from pampero.errors import InvalidRequestError
from pampero.parsers import (
    available_reasoning_parsers,
    available_tool_parsers,
    create_output_parser,
    detect_reasoning_parser,
    detect_tool_parser,
    parse_all,
    reasoning_parser,
    registry,
    tool_parser,
)
from pampero.parsers.hermes import HermesToolParser
from pampero.parsers.think import DeepSeekR1ReasoningParser, ThinkReasoningParser

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "templates"
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_weather", {"city": "Zürich", "unit": "celsius"}),
    ("search", {"query": 'say "hi"', "filters": {"tags": ["a", "b"], "limit": 3}}),
]


class FakeToolParser(HermesToolParser):
    """A plugin's parser: registered by entry point only."""


def test_built_in_names() -> None:
    assert {"hermes", "llama3_json", "mistral"} <= set(available_tool_parsers())
    assert {"think", "qwen3", "deepseek_r1"} <= set(available_reasoning_parsers())
    assert tool_parser("hermes") is HermesToolParser
    assert reasoning_parser("think") is ThinkReasoningParser
    assert reasoning_parser("deepseek_r1") is DeepSeekR1ReasoningParser


@pytest.mark.parametrize(
    ("lookup", "param"), [(tool_parser, "tool_parser"), (reasoning_parser, "reasoning_parser")]
)
def test_a_miss_lists_the_available_names(lookup: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        lookup("nope")
    assert caught.value.param == param
    assert "'nope'" in caught.value.message
    names = available_tool_parsers() if param == "tool_parser" else available_reasoning_parsers()
    for name in names:
        assert name in caught.value.message


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def entry_points(*, group: str) -> list[EntryPoint]:
        if group != registry.TOOL_PARSER_GROUP:
            return []
        return [
            EntryPoint("fake", f"{__name__}:FakeToolParser", group),
            EntryPoint("hermes", f"{__name__}:FakeToolParser", group),
        ]

    monkeypatch.setattr(registry, "entry_points", entry_points)
    registry._plugins.cache_clear()
    yield
    registry._plugins.cache_clear()


@pytest.mark.usefixtures("plugin")
def test_plugins_register_through_entry_points_and_cannot_replace_built_ins() -> None:
    assert available_tool_parsers()["fake"] == f"{__name__}:FakeToolParser"
    assert tool_parser("fake") is FakeToolParser
    assert tool_parser("hermes") is HermesToolParser
    parser = create_output_parser(tool_parser_name="fake")
    message = parse_all(parser, '<tool_call>{"name": "f"}</tool_call>')
    assert [call.name for call in message.tool_calls] == ["f"]


@pytest.mark.parametrize(
    ("fixture", "tools", "reasoning"),
    [
        ("qwen2.5.jinja", "hermes", None),
        ("qwen3.jinja", "hermes", "think"),
        ("llama3.1.jinja", "llama3_json", None),
        ("mistral.jinja", "mistral", None),
    ],
)
def test_detection_from_the_fixture_templates(
    fixture: str, tools: str, reasoning: str | None
) -> None:
    source = (TEMPLATES / fixture).read_text()
    assert detect_tool_parser(source) == tools
    assert detect_reasoning_parser(source) == reasoning


@pytest.mark.parametrize(
    ("template", "tools", "reasoning"),
    [
        ("{{ '<|python_tag|>' }}{{ messages }}", "llama3_json", None),
        ("{% for m in messages %}{{ m.content }}{% endfor %}", None, None),
        (
            "{{'<｜Assistant｜>'}}{% set c = content.split('</think>')[-1] %}{{'<think>\\n'}}",
            None,
            "deepseek_r1",
        ),
        ("{{ '[TOOL_CALLS]' }}{{ '<tool_call>' }}", "mistral", None),
        ("<tool_call>\n<function=example_function_name>\n</function>\n</tool_call>", None, None),
    ],
)
def test_detection_of_other_templates(
    template: str, tools: str | None, reasoning: str | None
) -> None:
    assert detect_tool_parser(template) == tools
    assert detect_reasoning_parser(template) == reasoning


def tool_calls(calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"abcdefgh{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
        }
        for i, (name, args) in enumerate(calls)
    ]


def rendered_reply(fixture: str, calls: list[tuple[str, dict[str, Any]]]) -> str:
    """What the fixture's template writes for an assistant turn making ``calls``."""
    eos = {"mistral.jinja": "</s>", "llama3.1.jinja": "<|eot_id|>"}.get(fixture, "<|im_end|>")
    template = ChatTemplate((TEMPLATES / fixture).read_text(), eos_token=eos)
    messages = [
        {"role": "user", "content": "What is the weather?"},
        {"role": "assistant", "content": None, "tool_calls": tool_calls(calls)},
    ]
    text = template.render(messages, add_generation_prompt=False).text
    if fixture == "llama3.1.jinja":
        start = text.rindex("<|start_header_id|>assistant<|end_header_id|>\n\n") + 47
    elif fixture == "mistral.jinja":
        start = text.rindex("[/INST]") + len("[/INST]")
    else:
        start = text.rindex("<|im_start|>assistant") + len("<|im_start|>assistant")
    return text[start : text.index(eos, start)]


@pytest.mark.parametrize("fixture", ["qwen2.5.jinja", "qwen3.jinja", "mistral.jinja"])
def test_what_a_template_writes_its_parser_reads_back(fixture: str) -> None:
    source = (TEMPLATES / fixture).read_text()
    reply = rendered_reply(fixture, CALLS)
    parser = create_output_parser(
        tool_parser_name=detect_tool_parser(source),
        reasoning_parser_name=detect_reasoning_parser(source),
    )
    message = parse_all(parser, reply)
    assert message.content == "" and message.reasoning == ""
    assert [(c.name, json.loads(c.arguments)) for c in message.tool_calls] == CALLS


def test_what_the_llama_template_writes_its_parser_reads_back() -> None:
    # This template writes one call per assistant turn.
    source = (TEMPLATES / "llama3.1.jinja").read_text()
    reply = rendered_reply("llama3.1.jinja", CALLS[1:])
    message = parse_all(tool_parser(detect_tool_parser(source) or "")(), reply)
    assert message.content == ""
    assert [(c.name, json.loads(c.arguments)) for c in message.tool_calls] == CALLS[1:]


def test_parsers_declare_the_markup_a_detokenizer_must_keep() -> None:
    assert tool_parser("hermes").markers == ("<tool_call>", "</tool_call>")
    assert tool_parser("llama3_json").markers == ("<|python_tag|>",)
    assert set(tool_parser("mistral").markers) == {"[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"}
    assert reasoning_parser("deepseek_r1").markers == ("<think>", "</think>")
    parser = create_output_parser(tool_parser_name="mistral", reasoning_parser_name="think")
    assert set(parser.markers) == {"[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<think>", "</think>"}
    assert create_output_parser().markers == ()
