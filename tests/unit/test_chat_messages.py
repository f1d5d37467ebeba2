"""Message normalisation: JSON-body messages into what chat templates expect."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from pampero.chat import ChatTemplate, normalize_messages, reject_media
from pampero.errors import InvalidRequestError

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def normalize(messages: Any, *, developer_role: bool = False) -> list[dict[str, Any]]:
    return normalize_messages(messages, media=reject_media("tiny"), developer_role=developer_role)


def refusal(messages: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        normalize(messages)
    return caught.value


def test_text_parts_are_joined_by_newlines() -> None:
    [message] = normalize(
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
            }
        ]
    )
    assert message == {"role": "user", "content": "one\ntwo"}


@pytest.mark.parametrize(
    ("part", "modality"),
    [
        (IMAGE, "image"),
        ({"type": "input_image", "image_url": "https://example.com/a.png"}, "image"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "audio"),
        ({"type": "file", "file": {"file_id": "f1"}}, "file"),
    ],
)
def test_media_parts_are_refused_by_default(part: dict[str, Any], modality: str) -> None:
    error = refusal(
        [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "see"}, part]},
        ]
    )
    assert error.message == f"Model tiny does not accept {modality} input."
    assert error.param == "messages[1].content[1]"


def test_a_media_handler_supplies_the_text_that_stands_for_a_part() -> None:
    seen: list[tuple[Mapping[str, Any], str]] = []

    def placeholder(part: Mapping[str, Any], param: str) -> str:
        seen.append((part, param))
        return "<image>"

    [message] = normalize_messages(
        [{"role": "user", "content": [IMAGE, {"type": "text", "text": "What is it?"}]}],
        media=placeholder,
        developer_role=False,
    )
    assert message["content"] == "<image>\nWhat is it?"
    assert seen == [(IMAGE, "messages[0].content[0]")]


def test_unknown_part_type_and_bad_text() -> None:
    assert refusal([{"role": "user", "content": [{"type": "hologram"}]}]).param == (
        "messages[0].content[0].type"
    )
    assert refusal([{"role": "user", "content": [{"type": "text", "text": 3}]}]).param == (
        "messages[0].content[0].text"
    )
    assert refusal([{"role": "user", "content": ["bare"]}]).param == "messages[0].content[0]"
    assert refusal([{"role": "user", "content": 7}]).param == "messages[0].content"


def test_refusal_parts_and_refusal_only_turns_are_text() -> None:
    messages = normalize(
        [
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
            {"role": "assistant", "content": None, "refusal": "No."},
        ]
    )
    assert [m["content"] for m in messages] == ["I can't.", "No."]


def test_roles() -> None:
    messages = normalize(
        [
            {"role": "developer", "content": "d"},
            {"role": "function", "name": "lookup", "content": "{}"},
        ]
    )
    assert messages == [
        {"role": "system", "content": "d"},
        {"role": "tool", "content": "{}", "name": "lookup"},
    ]
    assert normalize([{"role": "developer", "content": "d"}], developer_role=True)[0]["role"] == (
        "developer"
    )
    assert refusal([{"role": "wizard", "content": "x"}]).param == "messages[0].role"
    assert refusal([{"content": "x"}]).param == "messages[0].role"
    assert refusal(["hi"]).param == "messages[0]"
    assert refusal([]).param == "messages"


def test_developer_role_follows_the_template() -> None:
    knows = ChatTemplate(
        "{% for m in messages %}{% if m.role == 'developer' %}D:{% endif %}{{ m.role }}{% endfor %}"
    )
    plain = ChatTemplate("{% for m in messages %}{{ m.role }}{% endfor %}")
    developer = [{"role": "developer", "content": "x"}]
    assert knows.knows_developer_role and not plain.knows_developer_role
    assert knows.render(developer).text == "D:developer"
    assert plain.render(developer).text == "system"


def test_tool_call_arguments_are_parsed_for_the_template() -> None:
    [message] = normalize(
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": [1, "<b>"]}'},
                    },
                    {"id": "c2", "function": {"name": "g", "arguments": {"x": 1}}},
                    {"id": "c3", "function": {"name": "h", "arguments": ""}},
                    {"id": "c4", "index": 3, "function": {"name": "h"}},
                ],
            }
        ]
    )
    assert message == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "f", "arguments": {"a": [1, "<b>"]}},
            },
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": {"x": 1}}},
            {"id": "c3", "type": "function", "function": {"name": "h", "arguments": {}}},
            {
                "id": "c4",
                "index": 3,
                "type": "function",
                "function": {"name": "h", "arguments": {}},
            },
        ],
    }


@pytest.mark.parametrize(
    ("function", "param"),
    [
        ({"name": "f", "arguments": "{not json"}, "messages[1].tool_calls[1].function.arguments"),
        ({"name": "f", "arguments": "[1, 2]"}, "messages[1].tool_calls[1].function.arguments"),
        ({"name": "", "arguments": "{}"}, "messages[1].tool_calls[1].function.name"),
    ],
)
def test_bad_tool_calls_name_their_field(function: dict[str, Any], param: str) -> None:
    good = {"id": "c0", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    bad = {"id": "c1", "type": "function", "function": function}
    error = refusal(
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [good, bad]},
        ]
    )
    assert error.param == param


def test_legacy_function_call_and_reasoning_alias() -> None:
    [message] = normalize(
        [
            {
                "role": "assistant",
                "content": "ok",
                "reasoning": "because",
                "function_call": {"name": "f", "arguments": '{"a": 1}'},
            }
        ]
    )
    assert message == {
        "role": "assistant",
        "content": "ok",
        "reasoning_content": "because",
        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}],
    }


def test_absent_optional_keys_stay_absent() -> None:
    [message] = normalize([{"role": "assistant", "content": "x", "tool_calls": [], "name": None}])
    assert message == {"role": "assistant", "content": "x"}
    assert refusal([{"role": "user", "content": "x", "name": 5}]).param == "messages[0].name"


def test_input_is_not_modified() -> None:
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "a"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": '{"a": 1}'}}],
        },
    ]
    before = copy.deepcopy(messages)
    normalize(messages)
    assert messages == before


def test_unnamed_model_refusal_reads_well() -> None:
    with pytest.raises(InvalidRequestError, match=r"^This model does not accept image input\."):
        ChatTemplate("{{ messages }}").render([{"role": "user", "content": [IMAGE]}])
