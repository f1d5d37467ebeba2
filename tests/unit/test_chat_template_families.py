"""Llama-3.1, Mistral and Qwen3-style templates render what their families expect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pampero.chat import ChatTemplate
from pampero.errors import InvalidRequestError

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "templates"
CALL = {
    "id": "abcdefghi",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Rosario"}'},
}


def load(name: str, **kwargs: Any) -> ChatTemplate:
    return ChatTemplate((TEMPLATES / f"{name}.jinja").read_text(), **kwargs)


def test_llama_trims_contents_and_renders_tool_turns() -> None:
    llama = load("llama3.1", bos_token="<|begin_of_text|>")
    prompt = llama.render(
        [
            {"role": "system", "content": "  Be brief.\n"},
            {"role": "user", "content": " Weather? "},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "abcdefghi", "content": "18°C"},
        ]
    )
    assert prompt.text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        "Be brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWeather?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "get_weather", "parameters": {"city": "Rosario"}}<|eot_id|>'
        "<|start_header_id|>ipython<|end_header_id|>\n\n18°C<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_llama_refuses_parallel_tool_calls() -> None:
    llama = load("llama3.1")
    with pytest.raises(InvalidRequestError, match="one tool at a time"):
        llama.render(
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": None, "tool_calls": [CALL, CALL]},
            ]
        )


def test_mistral_folds_the_system_message_into_the_last_user_turn() -> None:
    mistral = load("mistral", bos_token="<s>", eos_token="</s>")
    prompt = mistral.render(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "abcdefghi", "content": "18°C"},
            {"role": "assistant", "content": " It is 18°C. "},
            {"role": "user", "content": "Thanks"},
        ]
    )
    assert prompt.text == (
        "<s>[INST] Weather?[/INST]"
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Rosario"}, '
        '"id": "abcdefghi"}]</s>'
        '[TOOL_RESULTS] {"content": "18°C", "call_id": "abcdefghi"}[/TOOL_RESULTS]'
        " It is 18°C.</s>"
        "[INST] Be brief.\n\nThanks[/INST]"
    )


def test_qwen3_splits_reasoning_out_of_assistant_history() -> None:
    qwen3 = load("qwen3")
    prompt = qwen3.render(
        [
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "<think>\nold thoughts\n</think>\n\nA1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "<think>\nnew thoughts\n</think>\n\nA2"},
        ],
        add_generation_prompt=False,
    )
    assert prompt.text == (
        "<|im_start|>user\nQ1<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n"
        "<|im_start|>user\nQ2<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nnew thoughts\n</think>\n\nA2<|im_end|>\n"
    )


def test_qwen3_reasoning_content_field() -> None:
    qwen3 = load("qwen3")
    prompt = qwen3.render(
        [
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A", "reasoning_content": "because"},
        ],
        add_generation_prompt=False,
    )
    assert prompt.text.endswith(
        "<|im_start|>assistant\n<think>\nbecause\n</think>\n\nA<|im_end|>\n"
    )
