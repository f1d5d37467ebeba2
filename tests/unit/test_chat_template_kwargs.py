"""chat_template_kwargs: an allow-list, and never a way to override what pampero passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pampero.chat import DEFAULT_TEMPLATE_KWARGS, ChatTemplate
from pampero.errors import InvalidRequestError

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "templates"
USER = [{"role": "user", "content": "Hi"}]
ECHO = "{{ messages[0].content }}|{{ bos_token }}|{{ enable_thinking }}|{{ custom_flag }}"


def refusal(template: ChatTemplate, kwargs: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        template.render(USER, template_kwargs=kwargs)
    return caught.value


def test_default_allow_list() -> None:
    assert {
        "enable_thinking",
        "thinking",
        "reasoning_effort",
        "add_vision_id",
        "tools_in_user_message",
        "date_string",
    } == DEFAULT_TEMPLATE_KWARGS


def test_allowed_kwargs_reach_the_template() -> None:
    template = ChatTemplate(ECHO, bos_token="<s>", extra_template_kwargs=["custom_flag"])
    prompt = template.render(USER, template_kwargs={"enable_thinking": False, "custom_flag": 7})
    assert prompt.text == "Hi|<s>|False|7"


@pytest.mark.parametrize(
    "key", ["custom_flag", "messages", "bos_token", "add_generation_prompt", "tools", "range"]
)
def test_other_keys_are_refused_by_name(key: str) -> None:
    error = refusal(ChatTemplate(ECHO), {key: "x"})
    assert error.param == f"chat_template_kwargs.{key}"
    assert "enable_thinking" in error.message


def test_kwargs_must_be_an_object() -> None:
    assert refusal(ChatTemplate(ECHO), ["enable_thinking"]).param == "chat_template_kwargs"


@pytest.mark.parametrize(
    "key",
    [
        "messages",
        "tools",
        "bos_token",
        "eos_token",
        "add_generation_prompt",
        "raise_exception",
        "range",
        "namespace",
    ],
)
def test_the_operator_cannot_allow_reserved_names(key: str) -> None:
    with pytest.raises(ValueError, match=key):
        ChatTemplate(ECHO, extra_template_kwargs=[key])


def test_enable_thinking_in_a_qwen3_style_template() -> None:
    qwen3 = ChatTemplate((TEMPLATES / "qwen3.jinja").read_text())
    thinking = qwen3.render(USER, template_kwargs={"enable_thinking": True}).text
    silent = qwen3.render(USER, template_kwargs={"enable_thinking": False}).text
    assert thinking == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert silent == thinking + "<think>\n\n</think>\n\n"
    assert qwen3.render(USER).text == thinking


def test_llama_date_string_and_tools_placement() -> None:
    llama = ChatTemplate((TEMPLATES / "llama3.1.jinja").read_text(), bos_token="<|begin_of_text|>")
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    in_system = llama.render(
        USER,
        tools=[tool],
        template_kwargs={"date_string": "1 Jan 2030", "tools_in_user_message": False},
    ).text
    assert in_system.startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 1 Jan 2030\n\n"
        "You have access to the following functions."
    )
    assert in_system.endswith(
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    in_user = llama.render(USER, tools=[tool]).text
    assert "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user" in in_user
    assert in_user.index("Given the following functions") > in_user.index("<|eot_id|>")
