"""The Responses API without a server: request → chat request, chat chunks → events and
Response (each checked against OpenAI's schemas), error paths renamed, the bounded store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pampero.errors import EngineError, InvalidRequestError, NotFoundError, UnsupportedParameter
from pampero.responses.events import ResponseBuilder, chunks_of_body, output_text
from pampero.responses.protocol import ITEMS, parse_response_request
from pampero.responses.service import _skeleton
from pampero.responses.store import ResponseStore
from pampero.responses.translate import rename_param, to_chat
from tests.spec.validate import validate_against


def parse(**body: Any) -> Any:
    return parse_response_request(json.dumps({"model": "m", **body}).encode(), strict=True)


def test_string_input_and_instructions() -> None:
    plan = to_chat(parse(input="Hi", instructions="Be brief.").request, [])
    assert plan.chat["messages"] == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert plan.origins == ["instructions", "input"]
    assert plan.chat["stream"] is True and plan.chat["stream_options"] == {"include_usage": True}


def test_items_become_one_assistant_turn_with_its_calls_then_tool_messages() -> None:
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [
            {"type": "reasoning_text", "text": "Need tools."}]},
        {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"c":"A"}'},
        {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"c":"B"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "rain"}]},
        {"type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "A sunny, B rain.", "annotations": []}]},
        {"role": "user", "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
    ]  # fmt: skip
    plan = to_chat(parse(input=items).request, [])
    messages = plan.chat["messages"]
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "user",
    ]
    assert messages[1]["reasoning_content"] == "Need tools."
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["c1", "c2"]
    assert messages[1]["tool_calls"][1]["function"] == {"name": "w", "arguments": '{"c":"B"}'}
    assert messages[3]["content"] == [{"type": "text", "text": "rain"}]
    assert messages[4] == {"role": "assistant", "content": "A sunny, B rain."}
    assert messages[5]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
    }
    assert plan.origins == ["input[0]", "input[1]", "input[4]", "input[5]", "input[6]", "input[7]"]


def test_tools_format_and_sampling_fields() -> None:
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    request = parse(
        input="x",
        tools=[tool, {**tool, "name": "g", "strict": False}],
        tool_choice={"type": "function", "name": "g"},
        parallel_tool_calls=False,
        text={"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}},
        reasoning={"effort": "low", "summary": "auto"},
        max_output_tokens=20,
        temperature=0.5,
        seed=3,
    ).request
    plan = to_chat(request, [])
    chat = plan.chat
    assert [t["function"]["strict"] for t in chat["tools"]] == [True, False]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "g"}}
    assert chat["parallel_tool_calls"] is False
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": {"type": "object"}},
    }
    assert chat["max_completion_tokens"] == 20 and chat["temperature"] == 0.5
    assert chat["seed"] == 3 and chat["reasoning_effort"] == "low"
    assert plan.ignored == ["reasoning.summary"]


def test_history_comes_before_the_new_input() -> None:
    history = ITEMS.validate_python([{"role": "user", "content": "Earlier"}])
    plan = to_chat(parse(input=[{"role": "user", "content": "Now"}]).request, history)
    assert [m["content"] for m in plan.chat["messages"]] == ["Earlier", "Now"]
    assert plan.origins == ["previous_response_id", "input[0]"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"type": "web_search_call"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
         "input[0].content[0].image_url"),
        ({"input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]},
         "input[0].content[0].type"),
        ({}, "input"),
        ({"input": "x", "tool_choice": "required"}, "tool_choice"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ],
)  # fmt: skip
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse(**body)
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"include": ["reasoning.encrypted_content", "code_interpreter_call.outputs"]},
         "include[1]"),
    ],
)  # fmt: skip
def test_unsupported_fields_are_refused_by_name(body: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        to_chat(parse(input="x", **body).request, [])
    assert caught.value.param == param


def test_chat_params_are_renamed() -> None:
    origins = ["instructions", "input[2]"]
    assert rename_param("messages[1].content[0].image_url.url", origins) == (
        "input[2].content[0].image_url.url"
    )
    assert rename_param("messages[0].content", origins) == "instructions.content"
    assert rename_param("max_completion_tokens", origins) == "max_output_tokens"
    assert rename_param("response_format.json_schema.schema", origins) == "text.format"
    assert rename_param("tools[1].function.parameters", origins) == "tools[1].parameters"
    assert rename_param("temperature", origins) == "temperature"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


CHAT_USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 7,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 2},
}


def build(chunks: list[dict[str, Any]], **request: Any) -> tuple[ResponseBuilder, list[Any]]:
    builder = ResponseBuilder(_skeleton(parse(input="x", **request).request, "m"))
    events = builder.start()
    for item in chunks:
        events += builder.feed(item)
    events += builder.finish()
    for event in events:
        validate_against("ResponseStreamEvent", event)
    validate_against("Response", builder.response)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return builder, events


def test_reasoning_text_and_calls_become_items_in_order() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    builder, events = build(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "Think", "reasoning": "Think"}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({"tool_calls": [{**call, "function": {"name": "f", "arguments": '{"a"'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
            chunk({"tool_calls": [{**call, "index": 1, "id": "call_2"}]}),
            chunk({}, "tool_calls"),
            {"choices": [], "usage": CHAT_USAGE},
        ],
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    )
    response = builder.response
    assert [item["type"] for item in response["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert response["output"][0]["content"] == [{"type": "reasoning_text", "text": "Think"}]
    assert output_text(response) == "Hello"
    assert response["output"][2]["arguments"] == '{"a": 1}'
    assert response["output"][3]["call_id"] == "call_2"
    assert response["status"] == "completed"
    assert response["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 17,
    }
    kinds = [event["type"] for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done")
    assert kinds[-1] == "response.completed"


def test_length_makes_an_incomplete_response() -> None:
    builder, events = build([chunk({"content": "a"}), chunk({}, "length")])
    assert builder.response["status"] == "incomplete"
    assert builder.response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert builder.response["output"][0]["status"] == "incomplete"
    assert events[-1]["type"] == "response.incomplete"


def test_a_failure_after_the_start_is_an_error_event_then_failed() -> None:
    builder = ResponseBuilder(_skeleton(parse(input="x").request, "m"))
    events = builder.start() + builder.feed(chunk({"content": "a"}))
    events += builder.fail(EngineError("boom"))
    for event in events:
        validate_against("ResponseStreamEvent", event)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "boom"}


def test_a_whole_chat_body_folds_like_its_stream() -> None:
    body = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hi",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": CHAT_USAGE,
    }
    builder, _ = build(chunks_of_body(body))
    assert [item["type"] for item in builder.response["output"]] == ["message", "function_call"]
    assert builder.response["usage"]["total_tokens"] == 17


def response(n: int, text: str = "") -> dict[str, Any]:
    return {"id": f"resp_{n}", "output": [{"type": "message", "text": text}]}


def test_store_is_lru_bounded_by_entries_and_bytes() -> None:
    store = ResponseStore(max_items=2, max_bytes=10_000)
    for n in range(3):
        store.put(response(n), [{"role": "user", "content": str(n)}])
    with pytest.raises(NotFoundError):
        store.get("resp_0")
    store.get("resp_1")  # now the most recent
    store.put(response(3), [])
    assert store.get("resp_1") and len(store) == 2
    with pytest.raises(NotFoundError):
        store.get("resp_2")
    store.put(response(4, "x" * 20_000), [])  # larger than the whole budget: not kept
    with pytest.raises(NotFoundError):
        store.get("resp_4")
    small = ResponseStore(max_items=10, max_bytes=300)
    for n in range(5):
        small.put(response(n, "y" * 50), [])
    assert 0 < len(small) < 5
    assert small.get("resp_4").conversation()[-1]["text"] == "y" * 50
    small.delete("resp_4")
    with pytest.raises(NotFoundError):
        small.delete("resp_4")
