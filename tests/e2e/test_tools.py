"""Tool calling on the real model, driven as clients drive it: the ``openai`` SDK's round trip
(call, tool result, final answer), forced and free calls, streaming, the legacy ``functions``
API, and the 400s for conversations that do not add up.

The 0.5B model is a weak tool user: under ``auto`` it often calls again instead of answering, so
the round trips force the call and then forbid another (``docs/tools.md``). Every HTTP answer is
checked against OpenAI's spec by the harness; the SDK's are checked here the same way.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.e2e.harness import CHUNK_EXTRAS, MODEL_ID, check_chat
from tests.spec.validate import validate_against

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"


def function(name, description, parameters, **extra):
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters, **extra},
    }


WEATHER = function(
    "get_weather",
    "The current weather of a city",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
FLIGHT = function(
    "book_flight",
    "Book a flight",
    {
        "type": "object",
        "properties": {
            "route": {
                "type": "object",
                "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
                "required": ["from", "to"],
            },
            "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
            "cabin": {"type": "string", "enum": ["economy", "business"]},
        },
        "required": ["route", "passengers", "cabin"],
    },
)
TOOLS = [WEATHER, FLIGHT]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
PARIS = "What's the weather in Paris?"
TWO_CITIES = "What's the weather in Paris and in Rome?"
BOOK = "Book a flight from Paris to Rome for two people."


def named(name):
    return {"type": "function", "function": {"name": name}}


def checked_calls(choice):
    """The choice's tool calls, each well formed and its arguments valid for its function."""
    calls = choice["message"]["tool_calls"]
    assert calls, choice
    assert choice["finish_reason"] == "tool_calls"
    for call in calls:
        assert call["type"] == "function" and call["id"].startswith("call_")
        schema = SCHEMAS[call["function"]["name"]]
        jsonschema.validate(json.loads(call["function"]["arguments"]), schema)
    assert len({call["id"] for call in calls}) == len(calls)
    return calls


def no_markup(text):
    assert text is None or ("<tool_call>" not in text and "</tool_call>" not in text), text


def no_call_json(text):
    """``tool_choice: "none"``: no call markup, tagged or bare, and no line opening JSON."""
    no_markup(text)
    assert '"arguments"' not in (text or ""), text
    assert not any(line.lstrip().startswith(("{", "[")) for line in (text or "").split("\n")), text


def sdk(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def spec_checked(completion):
    check_chat(completion.model_dump(exclude_unset=True))
    return completion


# --- the round trip with the openai SDK ---------------------------------------------------


def test_sdk_round_trip(server):
    messages = [{"role": "user", "content": PARIS}]
    fields = {"model": MODEL_ID, "tools": [WEATHER], "temperature": 0, "max_tokens": 60}
    with sdk(server) as client:
        create = client.chat.completions.create
        first = spec_checked(create(messages=messages, tool_choice="required", **fields))
        assert first.choices[0].finish_reason == "tool_calls"
        call = first.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather"
        arguments = json.loads(call.function.arguments)
        jsonschema.validate(arguments, SCHEMAS["get_weather"])
        result = {"city": arguments["city"], "temperature": 18, "unit": arguments["unit"]}
        messages += [  # the SDK's message object goes back as it came, as docs/tools.md shows
            first.choices[0].message,
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)},
        ]
        final = spec_checked(create(messages=messages, tool_choice="none", **fields))
    answer = final.choices[0]
    assert answer.finish_reason in ("stop", "length")
    assert not answer.message.tool_calls
    assert answer.message.content and answer.message.content.strip()
    no_call_json(answer.message.content)


def streamed_turn(client, messages, **fields):
    """One streamed SDK turn: (content, {index: call}, finish_reason), every chunk checked."""
    content, calls, finish = "", {}, None
    for chunk in client.chat.completions.create(messages=messages, stream=True, **fields):
        shown = chunk.model_dump(exclude_unset=True)
        validate_against("CreateChatCompletionStreamResponse", shown, allow_extra=CHUNK_EXTRAS)
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for piece in choice.delta.tool_calls or []:
                call = calls.setdefault(
                    piece.index,
                    {"id": piece.id, "type": "function", "function": {"name": piece.function.name}},
                )
                arguments = call["function"].get("arguments", "") + (piece.function.arguments or "")
                call["function"]["arguments"] = arguments
            finish = choice.finish_reason or finish
    return content, calls, finish


def test_sdk_round_trip_streamed(server):
    messages = [{"role": "user", "content": PARIS}]
    fields = {"model": MODEL_ID, "tools": [WEATHER], "temperature": 0, "max_tokens": 60}
    with sdk(server) as client:
        content, calls, finish = streamed_turn(client, messages, tool_choice="required", **fields)
        assert finish == "tool_calls" and not content
        (call,) = calls.values()
        jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS["get_weather"])
        messages += [
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": '{"temperature": 18}'},
        ]
        content, calls, finish = streamed_turn(client, messages, tool_choice="none", **fields)
    assert finish in ("stop", "length")
    assert not calls
    assert content.strip()
    no_call_json(content)


# --- forced, free and forbidden calls ------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "choice"),
    [
        (PARIS, "required"),
        (BOOK, "required"),
        (BOOK, named("book_flight")),
        ("Is it cold in Oslo?", named("get_weather")),
        ("Hello! How are you?", named("book_flight")),  # even with nothing to call for
        ("Hello! How are you?", "required"),
    ],
)
def test_forced_calls_always_validate(api, prompt, choice):
    body = api.chat(prompt, tools=TOOLS, tool_choice=choice, max_tokens=120)
    calls = checked_calls(body["choices"][0])
    no_markup(body["choices"][0]["message"]["content"])
    if isinstance(choice, dict):
        assert {call["function"]["name"] for call in calls} == {choice["function"]["name"]}


@pytest.mark.parametrize(
    ("prompt", "fields"),
    [
        (PARIS, {"tool_choice": "auto"}),
        (BOOK, {}),  # auto is the default with tools
        ("Hello! How are you?", {"tool_choice": "auto"}),
        ("Write a haiku.", {}),
    ],
)
def test_auto_gives_content_or_calls_never_markup(api, prompt, fields):
    answer = api.chat(prompt, tools=TOOLS, max_tokens=60, **fields)
    choice = answer["choices"][0]
    no_markup(choice["message"]["content"])
    if choice["message"]["tool_calls"]:
        calls = choice["message"]["tool_calls"]
        for call in calls:
            assert call["function"]["name"] in SCHEMAS
        # The small model may start yet another call after its first ones; when max_tokens cuts
        # that one off, it comes back with the arguments written so far (not closed), and the
        # finish says the answer was cut.
        assert choice["finish_reason"] in ("tool_calls", "length")
        complete = calls if choice["finish_reason"] == "tool_calls" else calls[:-1]
        for call in complete:
            assert isinstance(json.loads(call["function"]["arguments"]), dict)
        if choice["finish_reason"] == "length":
            assert answer["usage"]["completion_tokens"] == 60
    else:
        assert choice["message"]["content"]
        assert choice["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("prompt", [PARIS, BOOK])
def test_none_never_calls(api, prompt):
    choice = api.chat(prompt, tools=TOOLS, tool_choice="none", max_tokens=40)["choices"][0]
    assert choice["message"]["tool_calls"] in (None, [])
    assert choice["finish_reason"] in ("stop", "length")
    no_call_json(choice["message"]["content"])
    streamed = api.stream_chat(prompt, tools=TOOLS, tool_choice="none", max_tokens=40)
    assert all("tool_calls" not in e["choices"][0]["delta"] for e in streamed.events)
    assert streamed.choices[0].finish_reason in ("stop", "length")
    no_call_json(streamed.choices[0].text)


def test_strict_functions_under_auto(api):
    strict = function(**{**WEATHER["function"], "strict": True})
    for prompt in (PARIS, "Is it raining in Lima? Use fahrenheit."):
        choice = api.chat(prompt, tools=[strict], max_tokens=60)["choices"][0]
        no_markup(choice["message"]["content"])
        if choice["message"]["tool_calls"]:
            checked_calls(choice)


def test_parallel_tool_calls_false_makes_one_call(api):
    several = api.chat(TWO_CITIES, tools=[WEATHER], tool_choice="required", max_tokens=80)
    assert len(checked_calls(several["choices"][0])) >= 1
    one = api.chat(
        TWO_CITIES,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=80,
    )
    assert len(checked_calls(one["choices"][0])) == 1


# --- calls an agent loop can trust (issue 18), with the openai SDK -------------------------


def call_key(call):
    return call.function.name, json.loads(call.function.arguments)


def test_a_named_choice_makes_exactly_one_call(server):
    fields = {"model": MODEL_ID, "tools": [WEATHER, FLIGHT], "temperature": 0, "max_tokens": 200}
    with sdk(server) as client:
        for prompt in (TWO_CITIES, PARIS):
            completion = spec_checked(
                client.chat.completions.create(
                    messages=[{"role": "user", "content": prompt}],
                    tool_choice=named("get_weather"),
                    **fields,
                )
            )
            choice = completion.choices[0]
            assert choice.finish_reason == "tool_calls"
            (call,) = choice.message.tool_calls
            assert call.function.name == "get_weather"
            jsonschema.validate(json.loads(call.function.arguments), SCHEMAS["get_weather"])


@pytest.mark.parametrize("prompt", [PARIS, TWO_CITIES])
def test_required_never_repeats_an_identical_call(server, prompt):
    """The 0.5B model loops its first call after a newline; the first identical repeat ends
    the output, so the calls are distinct and the answer ends long before max_tokens."""
    fields = {"model": MODEL_ID, "tools": [WEATHER], "temperature": 0, "max_tokens": 300}
    messages = [{"role": "user", "content": prompt}]
    with sdk(server) as client:
        completion = spec_checked(
            client.chat.completions.create(messages=messages, tool_choice="required", **fields)
        )
        content, streamed, finish = streamed_turn(
            client, messages, tool_choice="required", **fields
        )
    choice = completion.choices[0]
    keys = [call_key(call) for call in choice.message.tool_calls]
    assert keys and all(keys.count(key) == 1 for key in keys), keys
    assert choice.finish_reason == "tool_calls"
    assert completion.usage.completion_tokens < 300
    assert finish == "tool_calls" and not content
    assert [
        (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in (streamed[i] for i in sorted(streamed))
    ] == keys


def test_a_call_cut_by_max_tokens_keeps_its_raw_arguments(server):
    fields = {"model": MODEL_ID, "tools": [WEATHER], "temperature": 0}
    messages = [{"role": "user", "content": PARIS}]
    named_weather = named("get_weather")
    with sdk(server) as client:
        create = client.chat.completions.create
        whole = create(messages=messages, tool_choice=named_weather, max_tokens=100, **fields)
        complete = whole.choices[0].message.tool_calls[0].function.arguments
        budget = whole.usage.completion_tokens - 5  # inside the arguments, before "}}"
        cut = spec_checked(
            create(messages=messages, tool_choice=named_weather, max_tokens=budget, **fields)
        )
        content, streamed, finish = streamed_turn(
            client, messages, tool_choice=named_weather, max_tokens=budget, **fields
        )
    assert not content
    choice = cut.choices[0]
    assert choice.finish_reason == "length" and finish == "length"
    (call,) = choice.message.tool_calls
    written = call.function.arguments
    # The text the model wrote before the cut: never closed into valid-looking arguments.
    assert complete.startswith(written) and written != complete, (written, complete)
    with pytest.raises(json.JSONDecodeError):
        json.loads(written)
    assert streamed[0]["function"]["arguments"] == written


def test_strict_calls_validate_bare_or_tagged(server):
    """Under auto, the 0.5B model often writes the call object with no tag; a strict
    function's arguments validate either way, and no call is left in content."""
    strict = function(**{**FLIGHT["function"], "strict": True})
    fields = {"model": MODEL_ID, "tools": [strict], "temperature": 0, "max_tokens": 150}
    with sdk(server) as client:
        for prompt in (BOOK, "Fly me from Lima to Quito, just me, economy."):
            completion = spec_checked(
                client.chat.completions.create(
                    messages=[{"role": "user", "content": prompt}], **fields
                )
            )
            message = completion.choices[0].message
            no_markup(message.content)
            assert '"name"' not in (message.content or ""), message.content
            for call in message.tool_calls or []:
                jsonschema.validate(json.loads(call.function.arguments), SCHEMAS["book_flight"])


def test_strict_tools_and_response_format_both_bind(server):
    answer = {
        "type": "object",
        "properties": {"summary": {"type": "string"}, "cities": {"type": "integer"}},
        "required": ["summary", "cities"],
        "additionalProperties": False,
    }
    strict = function(**{**WEATHER["function"], "strict": True})
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": answer}}
    with sdk(server) as client:
        for prompt in (PARIS, "Say hello."):
            completion = spec_checked(
                client.chat.completions.create(
                    model=MODEL_ID,
                    messages=[{"role": "user", "content": prompt}],
                    tools=[strict],
                    response_format=response_format,
                    temperature=0,
                    max_tokens=150,
                )
            )
            message = completion.choices[0].message
            if message.tool_calls:
                for call in message.tool_calls:
                    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS["get_weather"])
            elif completion.choices[0].finish_reason == "stop":
                jsonschema.validate(json.loads(message.content), answer)


# --- streaming -----------------------------------------------------------------------------


@pytest.mark.parametrize("choice", ["required", named("get_weather")])
def test_streamed_calls_match_the_whole_answer(exact_api, choice):
    fields = {"tools": [WEATHER], "tool_choice": choice, "max_tokens": 80}
    whole = exact_api.chat(TWO_CITIES, **fields)["choices"][0]
    streamed = exact_api.stream_chat(TWO_CITIES, **fields)
    assert streamed.choices[0].finish_reason == "tool_calls"
    assert streamed.texts() == [""]
    calls = {}
    for event in streamed.events:
        for piece in event["choices"][0]["delta"].get("tool_calls", []):
            if piece["index"] not in calls:  # the first delta of a call names it
                assert set(piece) == {"index", "id", "type", "function"}, piece
                assert piece["type"] == "function" and piece["id"].startswith("call_")
                calls[piece["index"]] = {"name": piece["function"]["name"], "arguments": ""}
            else:  # later ones carry argument fragments only
                assert set(piece) == {"index", "function"}, piece
                assert set(piece["function"]) == {"arguments"}, piece
            calls[piece["index"]]["arguments"] += piece["function"].get("arguments", "")
    assert sorted(calls) == list(range(len(calls)))
    expected = [
        {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in checked_calls(whole)
    ]
    assert [calls[i] for i in sorted(calls)] == expected


# --- the legacy functions API ---------------------------------------------------------------


@pytest.mark.parametrize("function_call", [None, "auto", {"name": "get_weather"}])
def test_legacy_functions(api, function_call):
    fields = {"functions": [WEATHER["function"]], "max_tokens": 60}
    if function_call is not None:
        fields["function_call"] = function_call
    choice = api.chat(PARIS, **fields)["choices"][0]
    assert choice["finish_reason"] == "function_call", choice
    call = choice["message"]["function_call"]
    assert call["name"] == "get_weather"
    jsonschema.validate(json.loads(call["arguments"]), SCHEMAS["get_weather"])
    assert not choice["message"].get("tool_calls")
    streamed = api.stream_chat(PARIS, **fields)
    deltas = [event["choices"][0]["delta"] for event in streamed.events]
    pieces = [delta["function_call"] for delta in deltas if "function_call" in delta]
    assert pieces and pieces[0]["name"] == "get_weather"
    assert streamed.choices[0].finish_reason == "function_call"
    json.loads("".join(piece.get("arguments", "") for piece in pieces))


def test_legacy_function_call_none_never_calls(api):
    body = api.chat(PARIS, functions=[WEATHER["function"]], function_call="none", max_tokens=40)
    choice = body["choices"][0]
    assert "function_call" not in choice["message"] or choice["message"]["function_call"] is None
    assert choice["finish_reason"] in ("stop", "length")


# --- conversations that do not add up: 400 naming the field ---------------------------------

USER = {"role": "user", "content": PARIS}


def assistant_call(arguments, call_id="call_1"):
    call = {"name": "get_weather", "arguments": arguments}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": call}],
    }


def tool_result(call_id):
    return {"role": "tool", "tool_call_id": call_id, "content": '{"temperature": 18}'}


ARGS = '{"city": "Paris", "unit": "celsius"}'


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": [USER, tool_result("call_x")]}, "messages[1].tool_call_id"),
        (
            {"messages": [USER, assistant_call(ARGS), tool_result("call_2")]},
            "messages[2].tool_call_id",
        ),
        (
            {"messages": [USER, assistant_call('{"city": "Paris"'), tool_result("call_1")]},
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {"messages": [USER, assistant_call("[1, 2]"), tool_result("call_1")]},
            "messages[1].tool_calls[0].function.arguments",
        ),
        ({"tool_choice": named("no_such_tool")}, "tool_choice"),
        ({"tools": None, "tool_choice": "required"}, "tool_choice"),
        ({"tools": None, "tool_choice": named("get_weather")}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"functions": [WEATHER["function"]]}, "functions"),  # and tools
        ({"tools": None, "function_call": {"name": "get_weather"}}, "function_call"),
    ],
)
def test_inconsistent_tool_requests(api, fields, param):
    body = api.chat_body(PARIS, {"tools": [WEATHER], **fields})
    body = {key: value for key, value in body.items() if value is not None}
    error = api.error(CHAT, body, 400)
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


def test_a_tool_result_for_an_earlier_call_is_answered(api):
    messages = [USER, assistant_call(ARGS), tool_result("call_1")]
    choice = api.chat(messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=30)
    # The model has a call in its history and copies it, bare or fenced, unless it cannot.
    assert choice["choices"][0]["message"]["content"]
    no_call_json(choice["choices"][0]["message"]["content"])


def test_a_parameters_schema_too_deep_to_enforce(api):
    deep = {"type": "string"}
    for _ in range(200):
        deep = {"type": "object", "properties": {"a": deep}}
    for fields in (
        {"tools": [function("deep", "Deep", deep)], "tool_choice": "required"},
        {"tools": [function("deep", "Deep", deep, strict=True)]},  # enforced under auto
    ):
        error = api.error(CHAT, api.chat_body("Hi", fields), 400)
        assert error["param"] == "tools", error
