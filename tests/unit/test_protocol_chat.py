"""Every top-level field of ``/v1/chat/completions``: accepted values, defaults, refusals."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pampero.errors import InvalidRequestError
from pampero.protocol import ChatCompletionRequest, parse_chat_request
from pampero.protocol.provider import ProviderPreferences

USER = [{"role": "user", "content": "Hola, cómo estás?"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "m", "messages": USER, **fields})


def parse(**fields: Any) -> ChatCompletionRequest:
    return parse_chat_request(body(**fields), strict=True).request


def refuse(**fields: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        parse_chat_request(body(**fields), strict=True)
    assert caught.value.status_code == 400
    return caught.value


def test_seed_request_parses_with_defaults() -> None:
    request = parse(max_tokens=200)
    assert request.model == "m"
    assert request.max_tokens == 200
    assert request.max_output_tokens == 200
    assert request.temperature is None  # omitted stays distinguishable from 1.0
    assert request.top_p is None
    assert request.n == 1
    assert request.stop == []
    assert request.stream is False
    assert request.logprobs is False
    assert request.presence_penalty == 0.0
    assert request.skip_special_tokens is True
    assert request.spaces_between_special_tokens is True
    assert request.add_special_tokens is False
    assert request.add_generation_prompt is True
    assert request.continue_final_message is False
    assert request.include_reasoning is True
    assert request.priority == 0
    assert request.length_penalty == 1.0
    assert request.min_tokens == 0
    assert request.resolved_tool_choice == "none"


VALID: list[tuple[str, Any, Any]] = [
    ("temperature", 0, 0.0),
    ("temperature", 2, 2.0),
    ("temperature", 0.7, 0.7),
    ("top_p", 1, 1.0),
    ("top_p", 0.01, 0.01),
    ("n", 128, 128),
    ("max_tokens", 1, 1),
    ("max_tokens", None, None),
    ("max_completion_tokens", 64, 64),
    ("stop", "\n", ["\n"]),
    ("stop", ["a", "b"], ["a", "b"]),
    ("stop", [], []),
    ("seed", -(2**63), -(2**63)),
    ("seed", 2**63 - 1, 2**63 - 1),
    ("presence_penalty", -2, -2.0),
    ("frequency_penalty", 2.0, 2.0),
    ("logit_bias", {"50256": -100, "7": 2.5}, {50256: -100.0, 7: 2.5}),
    ("logprobs", True, True),
    ("user", "u-1", "u-1"),
    ("parallel_tool_calls", False, False),
    ("service_tier", "flex", "flex"),
    ("metadata", {"k": "v"}, {"k": "v"}),
    ("store", True, True),
    ("reasoning_effort", "low", "low"),
    ("modalities", ["text"], ["text"]),
    ("safety_identifier", "abc", "abc"),
    ("prompt_cache_key", "k", "k"),
    ("top_k", -1, 0),
    ("top_k", 0, 0),
    ("top_k", 20, 20),
    ("min_p", 0, 0.0),
    ("min_p", 1, 1.0),
    ("repetition_penalty", 1.1, 1.1),
    ("length_penalty", -0.5, -0.5),
    ("use_beam_search", True, True),
    ("stop_token_ids", [2, 32000], [2, 32000]),
    ("include_stop_str_in_output", True, True),
    ("ignore_eos", True, True),
    ("min_tokens", 3, 3),
    ("skip_special_tokens", False, False),
    ("spaces_between_special_tokens", False, False),
    ("truncate_prompt_tokens", 1, 1),
    ("allowed_token_ids", [1, 2], [1, 2]),
    ("prompt_logprobs", 0, 0),
    ("prompt_logprobs", 20, 20),
    ("add_special_tokens", True, True),
    ("priority", -5, -5),
    ("return_tokens_as_token_ids", True, True),
    ("logits_processors", ["no_repeat"], ["no_repeat"]),
    ("echo", True, True),
    ("add_generation_prompt", False, False),
    ("chat_template_kwargs", {"enable_thinking": False}, {"enable_thinking": False}),
    ("include_reasoning", False, False),
    ("documents", [{"title": "t", "text": "x"}], [{"title": "t", "text": "x"}]),
    ("request_id", "req-1", "req-1"),
    ("chat_template", "{{ messages }}", "{{ messages }}"),
    (
        "provider",
        {"order": ["a", "b"], "allow_fallbacks": False},
        ProviderPreferences(order=["a", "b"], allow_fallbacks=False),
    ),
    ("models", ["b", "c"], ["b", "c"]),
]


@pytest.mark.parametrize(("field", "value", "expected"), VALID)
def test_valid_values(field: str, value: Any, expected: Any) -> None:
    assert getattr(parse(**{field: value}), field) == expected


# null means "the default" for fields whose default is not None (OpenAI's fields are nullable).
NULL_DEFAULTS: list[tuple[str, Any]] = [
    ("n", 1),
    ("stop", []),
    ("stream", False),
    ("logprobs", False),
    ("presence_penalty", 0.0),
    ("skip_special_tokens", True),
    ("add_generation_prompt", True),
    ("priority", 0),
]


@pytest.mark.parametrize(("field", "default"), NULL_DEFAULTS)
def test_null_means_default(field: str, default: Any) -> None:
    assert getattr(parse(**{field: None}), field) == default


INVALID: list[tuple[str, Any, str, str]] = [
    ("temperature", -0.1, "temperature", ">= 0"),
    ("temperature", 2.5, "temperature", "<= 2"),
    ("temperature", "0.5", "temperature", "expected a number, but got a string"),
    ("temperature", True, "temperature", "got a boolean"),
    ("top_p", 0, "top_p", "> 0"),
    ("top_p", 1.5, "top_p", "<= 1"),
    ("n", 0, "n", ">= 1"),
    ("n", 129, "n", "<= 128"),
    ("n", 1.5, "n", "expected an integer"),
    ("max_tokens", 0, "max_tokens", ">= 1"),
    ("max_tokens", "10", "max_tokens", "expected an integer"),
    ("max_completion_tokens", -1, "max_completion_tokens", ">= 1"),
    ("stop", 3, "stop", "a string or an array of strings"),
    ("stop", ["ok", 3], "stop", "a string or an array of strings"),
    ("stop", [""], "stop", "must not be empty"),
    ("seed", 2**63, "seed", "<= 9223372036854775807"),
    ("seed", "1", "seed", "expected an integer"),
    ("presence_penalty", -2.01, "presence_penalty", ">= -2"),
    ("frequency_penalty", 3, "frequency_penalty", "<= 2"),
    ("logit_bias", {"abc": 1}, "logit_bias", "not a token id"),
    ("logit_bias", {"-1": 1}, "logit_bias", "not a token id"),
    ("logit_bias", {"5": 101}, "logit_bias", "between -100 and 100"),
    ("logit_bias", {"5": "1"}, "logit_bias", "must be a number"),
    ("logit_bias", [1], "logit_bias", "expected an object"),
    ("logprobs", 1, "logprobs", "expected a boolean"),
    ("top_logprobs", 21, "top_logprobs", "<= 20"),
    ("top_logprobs", -1, "top_logprobs", ">= 0"),
    ("stream", "true", "stream", "expected a boolean"),
    ("stream_options", {"include_usage": "yes"}, "stream_options.include_usage", "boolean"),
    ("user", 5, "user", "expected a string"),
    ("service_tier", "turbo", "service_tier", "'auto'"),
    ("metadata", {"k": 1}, "metadata.k", "expected a string"),
    ("metadata", {f"k{i}": "v" for i in range(17)}, "metadata", "at most 16"),
    ("reasoning_effort", "extreme", "reasoning_effort", "'low'"),
    ("modalities", ["video"], "modalities[0]", "'text' or 'audio'"),
    ("prediction", {"type": "content", "content": []}, "prediction.content", "non-empty"),
    ("prediction", {"type": "diff", "content": "x"}, "prediction.type", "'content'"),
    ("audio", {"voice": "alloy", "format": "ogg"}, "audio.format", "'wav'"),
    ("audio", {"voice": "alloy"}, "audio.format", "Missing required parameter"),
    ("safety_identifier", "x" * 65, "safety_identifier", "at most 64"),
    ("top_k", -2, "top_k", ">= -1"),
    ("min_p", 1.5, "min_p", "<= 1"),
    ("repetition_penalty", 0, "repetition_penalty", "> 0"),
    ("length_penalty", "1", "length_penalty", "expected a number"),
    ("use_beam_search", "no", "use_beam_search", "expected a boolean"),
    ("stop_token_ids", [1, -2], "stop_token_ids[1]", ">= 0"),
    ("stop_token_ids", 5, "stop_token_ids", "expected an array"),
    ("min_tokens", -1, "min_tokens", ">= 0"),
    ("truncate_prompt_tokens", 0, "truncate_prompt_tokens", ">= 1"),
    ("allowed_token_ids", [], "allowed_token_ids", "non-empty"),
    ("allowed_token_ids", [2**31], "allowed_token_ids[0]", "<= 2147483647"),
    ("prompt_logprobs", 21, "prompt_logprobs", "<= 20"),
    ("prompt_logprobs", -1, "prompt_logprobs", ">= 0"),
    ("priority", 1.0, "priority", "expected an integer"),
    ("logits_processors", [{"qualname": "x.y"}], "logits_processors[0]", "expected a string"),
    ("logits_processors", [""], "logits_processors[0]", "non-empty"),
    ("echo", "no", "echo", "expected a boolean"),
    ("chat_template_kwargs", [], "chat_template_kwargs", "expected an object"),
    ("provider", {"sortt": "price"}, "provider.sortt", "Unrecognized parameter"),
    ("provider", {"only": "a"}, "provider.only", "expected an array"),
    ("provider", {"max_price": {"tokens": 1}}, "provider.max_price.tokens", "Unrecognized"),
    ("provider", {"data_collection": "maybe"}, "provider.data_collection", "'allow' or 'deny'"),
    ("models", ["a"] * 6, "models", "at most 5 items"),
    ("api_base", "http://x", "api_base", "not accepted"),
    ("base_url", "http://x", "base_url", "not accepted"),
    ("api_key", "sk-x", "api_key", "not accepted"),
    ("extra_headers", {"x": "y"}, "extra_headers", "not accepted"),
    ("documents", [{"title": 1}], "documents[0].title", "expected a string"),
    ("chat_template", 1, "chat_template", "expected a string"),
    ("provider", "fast", "provider", "expected an object"),
    ("model", "", "model", "non-empty"),
    ("model", 3, "model", "expected a string"),
    ("messages", [], "messages", "non-empty"),
    ("messages", "hi", "messages", "expected an array"),
]


@pytest.mark.parametrize(("field", "value", "param", "fragment"), INVALID)
def test_invalid_values(field: str, value: Any, param: str, fragment: str) -> None:
    error = refuse(**{field: value})
    assert error.param == param
    assert fragment in error.message
    assert f"'{param}'" in error.message or param.split(".")[0] in error.message


CROSS_FIELD: list[tuple[dict[str, Any], str, str]] = [
    ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when 'stream'"),
    ({"stream": False, "stream_options": {}}, "stream_options", "only allowed when 'stream'"),
    ({"top_logprobs": 2}, "top_logprobs", "'logprobs' must be true"),
    ({"top_logprobs": 0, "logprobs": False}, "top_logprobs", "'logprobs' must be true"),
    ({"stream": True, "prompt_logprobs": 1}, "prompt_logprobs", "not available"),
    ({"max_tokens": 10, "max_completion_tokens": 20}, "max_completion_tokens", "differs"),
    ({"max_tokens": 5, "min_tokens": 6}, "min_tokens", "greater than 'max_tokens'"),
    ({"max_completion_tokens": 5, "min_tokens": 6}, "min_tokens", "'max_completion_tokens'"),
    ({"continue_final_message": True}, "continue_final_message", "add_generation_prompt"),
    (
        {"continue_final_message": True, "add_generation_prompt": False},
        "continue_final_message",
        "last message must be an assistant",
    ),
    ({"tool_choice": "auto"}, "tool_choice", "only allowed when 'tools'"),
    ({"tool_choice": "required", "tools": []}, "tool_choice", "only allowed when 'tools'"),
    (
        {"tool_choice": {"type": "function", "function": {"name": "other"}}, "tools": [TOOL]},
        "tool_choice",
        "no tool named 'other'",
    ),
    ({"tools": [TOOL], "functions": [{"name": "f"}]}, "functions", "not both"),
    ({"function_call": "auto"}, "function_call", "only allowed when 'functions'"),
    (
        {"function_call": {"name": "g"}, "functions": [{"name": "f"}]},
        "function_call",
        "no function named 'g'",
    ),
]


@pytest.mark.parametrize(("fields", "param", "fragment"), CROSS_FIELD)
def test_cross_field_rules(fields: dict[str, Any], param: str, fragment: str) -> None:
    error = refuse(**fields)
    assert error.param == param
    assert fragment in error.message


def test_stream_options_with_stream() -> None:
    request = parse(
        stream=True, stream_options={"include_usage": True, "continuous_usage_stats": True}
    )
    assert request.stream_options is not None
    assert request.stream_options.include_usage is True
    assert request.stream_options.continuous_usage_stats is True


def test_max_tokens_equal_to_max_completion_tokens_is_fine() -> None:
    assert parse(max_tokens=7, max_completion_tokens=7).max_output_tokens == 7


def test_max_completion_tokens_wins_as_output_budget() -> None:
    assert parse(max_completion_tokens=9).max_output_tokens == 9
    assert parse().max_output_tokens is None


def test_continue_final_message_on_assistant_prefix() -> None:
    messages = [*USER, {"role": "assistant", "content": "Estoy"}]
    request = parse(messages=messages, continue_final_message=True, add_generation_prompt=False)
    assert request.continue_final_message is True


def test_tool_choice_forms() -> None:
    assert parse(tools=[TOOL]).resolved_tool_choice == "auto"
    assert parse(tools=[TOOL], tool_choice="required").resolved_tool_choice == "required"
    assert parse(tool_choice="none").resolved_tool_choice == "none"
    named = parse(
        tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    assert not isinstance(named.tool_choice, str)
    assert named.tool_choice is not None
    assert named.tool_choice.function.name == "get_weather"


def test_legacy_function_call_resolves_like_tool_choice() -> None:
    functions = [TOOL["function"]]
    assert parse(functions=functions).resolved_tool_choice == "auto"
    assert parse(functions=functions, function_call="none").resolved_tool_choice == "none"
    assert parse(functions=functions, function_call="auto").resolved_tool_choice == "auto"
    forced = parse(functions=functions, function_call={"name": "get_weather"})
    choice = forced.resolved_tool_choice
    assert not isinstance(choice, str)
    assert choice.function.name == "get_weather"


@pytest.mark.parametrize(
    ("choice", "param", "fragment"),
    [
        ("sometimes", "tool_choice", "'none', 'auto' or 'required'"),
        (3, "tool_choice", "or an object naming a function, but got an integer"),
        ({"type": "function"}, "tool_choice.function", "Missing required parameter"),
        ({"type": "function", "function": {"name": ""}}, "tool_choice.function.name", "non-empty"),
        ({"type": "custom", "function": {"name": "x"}}, "tool_choice.type", "'function'"),
    ],
)
def test_invalid_tool_choice(choice: Any, param: str, fragment: str) -> None:
    error = refuse(tools=[TOOL], tool_choice=choice)
    assert error.param == param
    assert fragment in error.message


@pytest.mark.parametrize(
    ("tools", "param", "fragment"),
    [
        ([{"type": "custom", "custom": {"name": "x"}}], "tools[0].type", "'function'"),
        ([{"type": "function"}], "tools[0].function", "Missing required parameter"),
        ([{"type": "function", "function": {"name": ""}}], "tools[0].function.name", "non-empty"),
        (
            [{"type": "function", "function": {"name": "f", "parameters": []}}],
            "tools[0].function.parameters",
            "expected an object",
        ),
        ([TOOL] * 129, "tools", "at most 128"),
        ({"type": "function"}, "tools", "expected an array"),
    ],
)
def test_invalid_tools(tools: Any, param: str, fragment: str) -> None:
    error = refuse(tools=tools)
    assert error.param == param
    assert fragment in error.message


def test_tool_definition_fields() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "description": "d",
            "parameters": {"type": "object"},
            "strict": True,
        },
    }
    request = parse(tools=[tool], parallel_tool_calls=True)
    assert request.tools is not None
    function = request.tools[0].function
    assert (function.name, function.description, function.strict) == ("f", "d", True)
    assert function.parameters == {"type": "object"}


def test_legacy_functions() -> None:
    functions = [{"name": "lookup", "description": "d", "parameters": {"type": "object"}}]
    request = parse(functions=functions, function_call={"name": "lookup"})
    assert request.functions is not None
    assert request.functions[0].name == "lookup"
    assert not isinstance(request.function_call, str)
    assert request.function_call is not None
    assert request.function_call.name == "lookup"
    assert parse(functions=functions, function_call="auto").function_call == "auto"
    assert parse(function_call="none").function_call == "none"


@pytest.mark.parametrize(
    ("fields", "param", "fragment"),
    [
        ({"functions": []}, "functions", "non-empty"),
        ({"functions": [{"description": "no name"}]}, "functions[0].name", "Missing"),
        (
            {"functions": [{"name": "f"}], "function_call": "required"},
            "function_call",
            "'none' or 'auto'",
        ),
        (
            {"functions": [{"name": "f"}], "function_call": {"nom": "f"}},
            "function_call.name",
            "Missing",
        ),
    ],
)
def test_invalid_legacy_functions(fields: dict[str, Any], param: str, fragment: str) -> None:
    error = refuse(**fields)
    assert error.param == param
    assert fragment in error.message


def test_accepted_shapes_of_openai_only_fields() -> None:
    request = parse(
        prediction={"type": "content", "content": [{"type": "text", "text": "x"}]},
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
    )
    assert request.prediction is not None
    assert request.audio is not None
    assert request.audio.voice == "alloy"
    assert parse(audio={"voice": {"id": "v1"}, "format": "mp3"}).audio is not None
