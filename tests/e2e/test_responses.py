"""The Responses API (``/v1/responses``) on the real model, driven by the official ``openai``
SDK: text, streamed events, a function tool round trip through ``previous_response_id``,
structured output through ``text.format``, the store (``store: false``, GET, DELETE, the
input items list and item references), output text logprobs (``include``), and the
errors. Every Response and every stream event is checked against OpenAI's own schemas.

The 0.5B model calls a tool again rather than answer after a tool result (docs/tools.md), so
the round trip forces the call, then forbids another and asks for a JSON answer.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.e2e.harness import MODEL_ID, check_error
from tests.spec.validate import validate_against

pytestmark = pytest.mark.e2e

ADD = {
    "type": "function",
    "name": "add",
    "description": "Add two integers",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
    "strict": True,
}
RESULT = {
    "type": "object",
    "properties": {"result": {"type": "integer"}},
    "required": ["result"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def checked(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.model_dump(mode="json", by_alias=True, exclude_unset=True)
    validate_against("Response", body)
    return body


def streamed(stream: Any) -> list[dict[str, Any]]:
    events = [event.model_dump(mode="json", by_alias=True, exclude_unset=True) for event in stream]
    for event in events:
        validate_against("ResponseStreamEvent", event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_text_response(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o-mini",
        instructions="Answer in one short sentence.",
        input="Say hello.",
        max_output_tokens=16,
        temperature=0,
        metadata={"trace": "t1"},
    )
    body = checked(response)
    assert body["object"] == "response" and body["status"] == "completed"
    assert body["model"] == MODEL_ID
    assert body["metadata"] == {"trace": "t1"}
    assert body["instructions"] == "Answer in one short sentence."
    assert [item["type"] for item in body["output"]] == ["message"]
    assert response.output_text.strip()
    usage = body["usage"]
    assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 16
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_streamed_events_come_in_documented_order(client: openai.OpenAI) -> None:
    stream = client.responses.create(
        model="gpt-4o-mini", input="Count from 1 to 5.", max_output_tokens=24, stream=True
    )
    events = streamed(stream)
    kinds = [event["type"] for event in events]
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        kinds[-1],
    ]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    done = next(e for e in events if e["type"] == "response.output_text.done")
    final = events[-1]["response"]
    assert done["text"] == "".join(deltas)
    assert final["output"][0]["content"][0]["text"] == done["text"]
    assert (
        events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    )
    assert final["usage"]["output_tokens"] > 0


def test_raw_stream_is_named_events_without_done(server: Any) -> None:
    body = {"model": MODEL_ID, "input": "Hi", "max_output_tokens": 4, "stream": True}
    with httpx.stream("POST", server.url + "/v1/responses", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(response.iter_raw()).decode()
    blocks = raw.split("\n\n")
    assert blocks[-1] == ""
    for block in blocks[:-1]:
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        assert json.loads(data.removeprefix("data: "))["type"] == name.removeprefix("event: ")
    assert "[DONE]" not in raw


def test_function_call_round_trip_through_previous_response_id(client: openai.OpenAI) -> None:
    first_input = "What is 1234 + 4321? Use the add tool."
    first = client.responses.create(
        model="gpt-4o-mini",
        input=first_input,
        tools=[ADD],
        tool_choice="required",
        temperature=0,
        max_output_tokens=64,
    )
    body = checked(first)
    calls = [item for item in body["output"] if item["type"] == "function_call"]
    assert len(calls) == 1 and calls[0]["name"] == "add", body["output"]
    arguments = json.loads(calls[0]["arguments"])
    jsonschema.validate(arguments, ADD["parameters"])
    total = arguments["a"] + arguments["b"]

    second = client.responses.create(
        model="gpt-4o-mini",
        previous_response_id=first.id,
        input=[
            {
                "type": "function_call_output",
                "call_id": calls[0]["call_id"],
                "output": json.dumps({"result": total}),
            }
        ],
        tools=[ADD],
        tool_choice="none",
        text={"format": {"type": "json_schema", "name": "answer", "schema": RESULT}},
        temperature=0,
        max_output_tokens=32,
    )
    body = checked(second)
    assert body["previous_response_id"] == first.id
    assert [item["type"] for item in body["output"]] == ["message"]
    answer = json.loads(second.output_text)
    jsonschema.validate(answer, RESULT)
    # The stored conversation reached the model: the call and its result are in the prompt
    # (with tool_choice "none" the tools are not, so the question alone is the baseline).
    used = client.responses.input_items.list(second.id, order="asc")
    assert [item.type for item in used] == ["message", "function_call", "function_call_output"]
    alone = client.responses.create(
        model="gpt-4o-mini", input=first_input, max_output_tokens=1, store=False
    )
    assert second.usage is not None and alone.usage is not None
    assert second.usage.input_tokens > alone.usage.input_tokens + 10


def test_streamed_function_call(client: openai.OpenAI) -> None:
    events = streamed(
        client.responses.create(
            model="gpt-4o-mini",
            input="Add 2 and 3 with the add tool.",
            tools=[ADD],
            tool_choice={"type": "function", "name": "add"},
            max_output_tokens=64,
            stream=True,
        )
    )
    kinds = [event["type"] for event in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert events[2]["item"]["type"] == "function_call"
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == "".join(deltas) and done["name"] == "add"
    jsonschema.validate(json.loads(done["arguments"]), ADD["parameters"])
    item = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    assert item["arguments"] == done["arguments"] and item["status"] == "completed"
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" not in kinds


def test_text_format_json_schema(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model="gpt-4o-mini",
        input="Ana is 30 years old. Give her as JSON.",
        text={
            "format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}
        },
        max_output_tokens=48,
    )
    body = checked(response)
    assert body["text"]["format"]["type"] == "json_schema"
    jsonschema.validate(json.loads(response.output_text), schema)


def test_cut_by_max_output_tokens_is_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o-mini", input="Write a long poem about the sea.", max_output_tokens=3
    )
    body = checked(response)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"
    events = streamed(
        client.responses.create(
            model="gpt-4o-mini", input="Write a long poem.", max_output_tokens=3, stream=True
        )
    )
    assert events[-1]["type"] == "response.incomplete"


def test_store_get_delete(client: openai.OpenAI) -> None:
    kept = client.responses.create(model="gpt-4o-mini", input="Hi", max_output_tokens=4)
    assert checked(client.responses.retrieve(kept.id))["output"] == checked(kept)["output"]
    client.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(kept.id)


def test_store_false_is_not_kept(client: openai.OpenAI, server: Any) -> None:
    gone = client.responses.create(
        model="gpt-4o-mini", input="Hi", max_output_tokens=4, store=False
    )
    assert checked(gone)["store"] is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(gone.id)
    body = {"model": MODEL_ID, "input": "Go on", "previous_response_id": gone.id}
    error = check_error(httpx.post(server.url + "/v1/responses", json=body, timeout=60), 404)
    assert error["param"] == "previous_response_id"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": [{"type": "web_search_call", "id": "x"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "output_text"}]}]},
            "input[0].content[0].text",
        ),
        ({"input": "Hi", "background": True}, "background"),
        ({"input": "Hi", "include": ["code_interpreter_call.outputs"]}, "include[0]"),
        ({"input": [{"type": "item_reference", "id": "msg_unknown"}]}, "input[0].id"),
        ({"input": "Hi", "max_output_tokens": 10**6}, "max_output_tokens"),
        ({"input": "Hi", "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
        ({"input": "Hi", "temperature": "hot"}, "temperature"),
    ],
)
def test_errors_name_the_responses_field(server: Any, fields: dict[str, Any], param: str) -> None:
    body = {"model": MODEL_ID, **fields}
    response = httpx.post(server.url + "/v1/responses", json=body, timeout=60)
    error = check_error(response, 404 if param.endswith(".id") else 400)
    assert error["param"] == param, error


def test_unknown_fields_are_reported_not_dropped(server: Any) -> None:
    body = {"model": MODEL_ID, "input": "Hi", "max_output_tokens": 2, "frobnicate": 1}
    response = httpx.post(server.url + "/v1/responses", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["x-pampero-ignored-params"] == "frobnicate"


def input_items(server: Any, response_id: str, **query: Any) -> dict[str, Any]:
    url = f"{server.url}/v1/responses/{response_id}/input_items"
    response = httpx.get(url, params=query, timeout=60)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    validate_against("ResponseItemList", body)
    return body


def test_input_items_and_item_references(client: openai.OpenAI, server: Any) -> None:
    fields: dict[str, Any] = {"model": "gpt-4o-mini", "max_output_tokens": 6, "temperature": 0}
    first = client.responses.create(
        input=[{"role": "user", "content": "My name is Ana."}], **fields
    )
    (said,) = input_items(server, first.id)["data"]
    assert said["id"].startswith("msg_") and said["role"] == "user"
    assert said["content"] == [{"type": "input_text", "text": "My name is Ana."}]
    # The SDK reads the list too.
    assert [item.id for item in client.responses.input_items.list(first.id)] == [said["id"]]

    second = client.responses.create(previous_response_id=first.id, input="And yours?", **fields)
    newest = input_items(server, second.id)  # newest first, as OpenAI lists them
    ids = [item["id"] for item in newest["data"]]
    assert len(ids) == 3 and ids[1] == first.output[0].id and ids[2] == said["id"]
    assert newest["first_id"] == ids[0] and newest["last_id"] == ids[2]
    oldest = input_items(server, second.id, order="asc", limit=2)
    assert [item["id"] for item in oldest["data"]] == ids[:0:-1] and oldest["has_more"]
    rest = input_items(server, second.id, order="asc", after=oldest["last_id"])
    assert [item["id"] for item in rest["data"]] == ids[:1] and not rest["has_more"]

    # An item reference stands for the stored item, input or output alike.
    third = client.responses.create(
        input=[
            {"type": "item_reference", "id": said["id"]},
            {"type": "item_reference", "id": first.output[0].id},
            {"role": "user", "content": "What is my name?"},
        ],
        **fields,
    )
    used = input_items(server, third.id, order="asc")["data"]
    assert used[0] == said
    assert used[1]["id"] == first.output[0].id and used[1]["role"] == "assistant"
    assert third.usage is not None and first.usage is not None
    assert third.usage.input_tokens > first.usage.input_tokens

    url = f"{server.url}/v1/responses/{first.id}/input_items"
    for query, param in (
        ({"limit": 0}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "x"}, "after"),
    ):
        error = check_error(httpx.get(url, params=query, timeout=60), 400)
        assert error["param"] == param, error
    missing = httpx.get(f"{server.url}/v1/responses/resp_missing/input_items", timeout=60)
    check_error(missing, 404)


def test_include_output_text_logprobs(client: openai.OpenAI) -> None:
    fields: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "input": "Say hello.",
        "include": ["message.output_text.logprobs"],
        "top_logprobs": 2,
        "max_output_tokens": 6,
        "temperature": 0,
    }
    body = checked(client.responses.create(**fields))
    (part,) = body["output"][0]["content"]
    assert part["logprobs"] and "".join(lp["token"] for lp in part["logprobs"]) == part["text"]
    for logprob in part["logprobs"]:
        assert logprob["logprob"] <= 0 and bytes(logprob["bytes"]).decode() == logprob["token"]
        assert len(logprob["top_logprobs"]) == 2
    assert body["top_logprobs"] == 2

    events = streamed(client.responses.create(stream=True, **fields))
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    (done,) = [e for e in events if e["type"] == "response.output_text.done"]
    assert [lp for e in deltas for lp in e["logprobs"]] == done["logprobs"]
    assert [lp["token"] for lp in done["logprobs"]] == [lp["token"] for lp in part["logprobs"]]
