"""``/v1/completions``, ``/tokenize`` and ``/detokenize`` requests."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pampero.errors import InvalidRequestError
from pampero.protocol import (
    CompletionRequest,
    TokenizeChatRequest,
    TokenizeCompletionRequest,
    parse_completion_request,
    parse_detokenize_request,
    parse_tokenize_request,
)
from pampero.protocol.provider import ProviderPreferences


def completion(**fields: Any) -> CompletionRequest:
    body = orjson.dumps({"model": "m", "prompt": "Once upon", **fields})
    return parse_completion_request(body, strict=True).request


def refuse(**fields: Any) -> InvalidRequestError:
    body = orjson.dumps({"model": "m", "prompt": "Once upon", **fields})
    with pytest.raises(InvalidRequestError) as caught:
        parse_completion_request(body, strict=True)
    return caught.value


def test_defaults() -> None:
    request = completion()
    assert request.max_tokens == 16
    assert request.echo is False
    assert request.logprobs is None
    assert request.best_of is None
    assert request.suffix is None
    assert request.add_special_tokens is True
    assert request.n == 1
    assert request.temperature is None


def test_null_max_tokens_means_up_to_the_context_end() -> None:
    assert completion(max_tokens=None).max_tokens is None


@pytest.mark.parametrize(
    ("prompt", "batch"),
    [
        ("Once upon", ["Once upon"]),
        ("", [""]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
    ],
)
def test_prompt_forms(prompt: Any, batch: Any) -> None:
    request = completion(prompt=prompt)
    assert request.prompt == prompt
    assert request.prompts == batch


VALID: list[tuple[str, Any, Any]] = [
    ("suffix", "The end.", "The end."),
    ("max_tokens", 1, 1),
    ("echo", True, True),
    ("logprobs", 0, 0),
    ("logprobs", 20, 20),
    ("best_of", 3, 3),
    ("add_special_tokens", False, False),
    ("top_k", 40, 40),
    ("stop", "\n\n", ["\n\n"]),
    ("ignore_eos", True, True),
    ("provider", {"sort": "price"}, ProviderPreferences(sort="price")),
]


@pytest.mark.parametrize(("field", "value", "expected"), VALID)
def test_valid_values(field: str, value: Any, expected: Any) -> None:
    assert getattr(completion(**{field: value}), field) == expected


INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"prompt": []}, "prompt", "non-empty"),
    ({"prompt": [[]]}, "prompt[0]", "non-empty"),
    ({"prompt": [[1], []]}, "prompt[1]", "non-empty"),
    ({"prompt": 5}, "prompt", "a string, an array of strings, an array of token ids"),
    ({"prompt": None}, "prompt", "but got null"),
    ({"prompt": [1, "a"]}, "prompt[1]", "expected an integer"),
    ({"prompt": ["a", 1]}, "prompt[1]", "expected a string"),
    ({"prompt": [-1]}, "prompt[0]", ">= 0"),
    ({"prompt": [True]}, "prompt[0]", "expected an integer"),
    ({"prompt": [[1], [2, 1.5]]}, "prompt[1][1]", "expected an integer"),
    ({"max_tokens": 0}, "max_tokens", ">= 1"),
    ({"logprobs": 21}, "logprobs", "<= 20"),
    ({"logprobs": True}, "logprobs", "expected an integer"),
    ({"best_of": 0}, "best_of", ">= 1"),
    ({"best_of": 21}, "best_of", "<= 20"),
    ({"best_of": 1, "n": 2}, "best_of", "at least 'n'"),
    ({"best_of": 3, "stream": True}, "best_of", "cannot be streamed"),
    ({"suffix": 1}, "suffix", "expected a string"),
    ({"echo": "yes"}, "echo", "expected a boolean"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed"),
    ({"min_tokens": 20}, "min_tokens", "greater than 'max_tokens' (16)"),
    ({"guided_json": {}, "guided_choice": ["a"]}, "guided_choice", "Only one"),
    ({"temperature": 9}, "temperature", "<= 2"),
]


@pytest.mark.parametrize(("fields", "param", "fragment"), INVALID)
def test_invalid_values(fields: dict[str, Any], param: str, fragment: str) -> None:
    error = refuse(**fields)
    assert error.param == param
    assert fragment in error.message


def test_missing_prompt() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_completion_request(b'{"model": "m"}', strict=False)
    assert caught.value.param == "prompt"
    assert caught.value.message == "Missing required parameter: 'prompt'."


def test_streamed_best_of_equal_to_n_is_fine() -> None:
    assert completion(best_of=2, n=2, stream=True).best_of == 2


def test_completion_unknown_fields() -> None:
    parsed = parse_completion_request(b'{"model": "m", "prompt": "x", "foo": 1}', strict=False)
    assert parsed.ignored == ["foo"]


def test_tokenize_prompt_form() -> None:
    parsed = parse_tokenize_request(b'{"prompt": "Hola"}', strict=True)
    request = parsed.request
    assert isinstance(request, TokenizeCompletionRequest)
    assert (request.model, request.prompt) == (None, "Hola")
    assert request.add_special_tokens is True
    assert request.return_token_strs is False


def test_tokenize_messages_form() -> None:
    body = orjson.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hola"}],
            "add_generation_prompt": False,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "chat_template_kwargs": {"enable_thinking": False},
            "return_token_strs": True,
        }
    )
    request = parse_tokenize_request(body, strict=True).request
    assert isinstance(request, TokenizeChatRequest)
    assert request.add_special_tokens is False
    assert request.add_generation_prompt is False
    assert request.return_token_strs is True
    assert request.tools is not None


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"model": "m"}, "prompt", "Missing required parameter: 'prompt'"),
        ({"prompt": "a", "messages": []}, "messages", "not both"),
        ({"prompt": 5}, "prompt", "expected a string"),
        ({"prompt": "a", "add_special_tokens": 1}, "add_special_tokens", "expected a boolean"),
        ({"messages": []}, "messages", "non-empty"),
        ({"messages": [{"role": "user", "content": 1}]}, "messages[0].content", "a string or"),
        (
            {"messages": [{"role": "user", "content": "x"}], "continue_final_message": True},
            "continue_final_message",
            "add_generation_prompt",
        ),
        ({"prompt": "x", "model": 1}, "model", "expected a string"),
    ],
)
def test_invalid_tokenize(body: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_tokenize_request(orjson.dumps(body), strict=True)
    assert caught.value.param == param
    assert fragment in caught.value.message


def test_tokenize_unknown_fields_in_both_forms() -> None:
    parsed = parse_tokenize_request(b'{"prompt": "x", "foo": 1}', strict=False)
    assert parsed.ignored == ["foo"]
    body = b'{"messages": [{"role": "user", "content": "x", "bar": 2}]}'
    assert parse_tokenize_request(body, strict=False).ignored == ["messages[0].bar"]
    with pytest.raises(InvalidRequestError) as caught:
        parse_tokenize_request(body, strict=True)
    assert caught.value.param == "messages[0].bar"


def test_detokenize() -> None:
    request = parse_detokenize_request(b'{"model": "m", "tokens": [1, 2, 3]}', strict=True).request
    assert (request.model, request.tokens) == ("m", [1, 2, 3])
    assert parse_detokenize_request(b'{"tokens": []}', strict=True).request.tokens == []


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (b"{}", "tokens", "Missing required parameter"),
        (b'{"tokens": "1 2"}', "tokens", "expected an array"),
        (b'{"tokens": [1, -1]}', "tokens[1]", ">= 0"),
        (b'{"tokens": [1.0]}', "tokens[0]", "expected an integer"),
    ],
)
def test_invalid_detokenize(body: bytes, param: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_detokenize_request(body, strict=True)
    assert caught.value.param == param
    assert fragment in caught.value.message
