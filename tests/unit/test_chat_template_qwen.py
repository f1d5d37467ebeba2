"""The default model's template (Qwen2.5, from its GGUF) renders exactly the ChatML HF renders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pampero.chat import ChatTemplate
from pampero.errors import InvalidRequestError

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "templates"
DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def qwen() -> ChatTemplate:
    source = (TEMPLATES / "qwen2.5.jinja").read_text()
    return ChatTemplate(source, eos_token="<|im_end|>", model_id="qwen")


def call(call_id: str, city: str) -> dict[str, Any]:
    arguments = json.dumps({"city": city}, ensure_ascii=False)
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }


def test_system_user_assistant_turns(qwen: ChatTemplate) -> None:
    prompt = qwen.render(
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "2+2?"},
        ]
    )
    assert prompt.text == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_default_system_message(qwen: ChatTemplate) -> None:
    prompt = qwen.render([{"role": "user", "content": "Hi"}])
    assert prompt.text == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_tools_tool_calls_and_grouped_tool_results(qwen: ChatTemplate) -> None:
    prompt = qwen.render(
        [
            {"role": "user", "content": "Weather in Rosario and Paraná?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("c1", "Rosario"), call("c2", "Paraná")],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "c2", "content": "21°C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert prompt.text == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        '{"type": "function", "function": {"name": "get_weather", "description": '
        '"Weather in a city", "parameters": {"type": "object", "properties": '
        '{"city": {"type": "string"}}, "required": ["city"]}}}\n</tools>\n\n'
        "For each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWeather in Rosario and Paraná?<|im_end|>\n"
        "<|im_start|>assistant"
        '\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rosario"}}\n</tool_call>'
        '\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paraná"}}\n</tool_call>'
        "<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n18°C\n</tool_response>"
        "\n<tool_response>\n21°C\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_tools_keep_the_client_system_message(qwen: ChatTemplate) -> None:
    prompt = qwen.render(
        [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Hi"}],
        tools=[WEATHER_TOOL],
    )
    assert prompt.text.startswith("<|im_start|>system\nUse tools.\n\n# Tools\n\n")
    assert prompt.text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_assistant_text_with_tool_call(qwen: ChatTemplate) -> None:
    prompt = qwen.render(
        [
            {"role": "user", "content": "Go"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [call("c1", "Rosario")]},
        ],
        add_generation_prompt=False,
    )
    assert prompt.text.endswith(
        "<|im_start|>assistant\nChecking.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Rosario"}}\n</tool_call><|im_end|>\n'
    )


def test_without_generation_prompt(qwen: ChatTemplate) -> None:
    prompt = qwen.render(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
        add_generation_prompt=False,
    )
    assert prompt.text.endswith("<|im_start|>assistant\nYo<|im_end|>\n")


def test_continue_final_message_cuts_after_its_text(qwen: ChatTemplate) -> None:
    prompt = qwen.render(
        [
            {"role": "user", "content": "Write a haiku"},
            {"role": "assistant", "content": "Autumn wind  "},
        ],
        add_generation_prompt=False,
        continue_final_message=True,
    )
    assert prompt.text == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nWrite a haiku<|im_end|>\n"
        "<|im_start|>assistant\nAutumn wind  "
    )


def test_continue_final_message_with_content_parts(qwen: ChatTemplate) -> None:
    prompt = qwen.render(
        [
            {"role": "user", "content": "Count"},
            {"role": "assistant", "content": [{"type": "text", "text": "1, 2,"}]},
        ],
        add_generation_prompt=False,
        continue_final_message=True,
    )
    assert prompt.text.endswith("<|im_start|>assistant\n1, 2,")


@pytest.mark.parametrize(
    ("messages", "add_generation_prompt", "param"),
    [
        ([{"role": "assistant", "content": "x"}], True, "continue_final_message"),
        ([{"role": "user", "content": "x"}], False, "continue_final_message"),
        (
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": " "}],
            False,
            "messages",
        ),
    ],
    ids=["with-generation-prompt", "last-is-user", "nothing-to-continue"],
)
def test_continue_final_message_refusals(
    qwen: ChatTemplate, messages: list[dict[str, Any]], add_generation_prompt: bool, param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        qwen.render(
            messages, add_generation_prompt=add_generation_prompt, continue_final_message=True
        )
    assert caught.value.param == param


def test_continue_refused_when_the_template_drops_the_message() -> None:
    template = ChatTemplate("{% for m in messages %}{{ m.content[:2] }}{% endfor %}")
    with pytest.raises(InvalidRequestError) as caught:
        template.render(
            [{"role": "assistant", "content": "Hello"}],
            add_generation_prompt=False,
            continue_final_message=True,
        )
    assert caught.value.param == "continue_final_message"
