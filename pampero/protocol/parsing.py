"""From request bytes to a validated model, or to an ``InvalidRequestError``.

``parse_model`` is what every endpoint's ``parse_*_request`` calls: decode the body with
orjson, validate it, turn the first validation failure into an OpenAI-style 400 whose ``param``
is a path such as ``messages[1].content[0].image_url.url``, and list the fields pampero does not
know (``Parsed.ignored``) or, in strict mode, refuse them.

Messages never dump the request back: values are shown only when short, and clipped.
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from pampero.errors import InvalidRequestError
from pampero.protocol.common import TAG_OPEN, clip

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Parsed(Generic[ModelT]):
    """A validated request and what pampero left out of it.

    ``ignored`` lists unknown fields by path (``"foo"``, ``"messages[0].foo"``); they are not
    kept on ``request``. ``raw`` is the decoded body as sent, for a gateway that forwards
    requests upstream unchanged.
    """

    request: ModelT
    ignored: list[str]
    raw: dict[str, Any]


def load_json_object(body: bytes | str) -> dict[str, Any]:
    """Decode a request body that must be a JSON object."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"We could not parse the JSON body of your request ({exc}). The body must be a "
            "JSON object."
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"The request body must be a JSON object, but got {_json_type(data)}."
        )
    return data


def parse_model(model: type[ModelT], body: bytes | str, *, strict: bool) -> Parsed[ModelT]:
    """Decode and validate ``body`` as ``model``; see the module docstring."""
    data = load_json_object(body)
    return validate_object(model, data, strict=strict)


def validate_object(model: type[ModelT], data: dict[str, Any], *, strict: bool) -> Parsed[ModelT]:
    """Validate an already decoded JSON object as ``model``."""
    try:
        request = model.model_validate(data)
    except ValidationError as exc:
        raise translate_validation_error(exc) from None
    ignored: list[str] = []
    _collect_unknown(request, "", ignored)
    if strict and ignored:
        names = ", ".join(ignored[:5])
        plural = "s" if len(ignored) > 1 else ""
        raise InvalidRequestError(
            f"Unrecognized request argument{plural} supplied: {names}.", param=ignored[0]
        )
    return Parsed(request=request, ignored=ignored, raw=data)


def _collect_unknown(node: Any, path: str, out: list[str]) -> None:
    if isinstance(node, BaseModel):
        extra = node.__pydantic_extra__
        if extra:
            # Clipped: the names end up in logs and warnings, and a key can be any length.
            out.extend(_join(path, clip(str(key), 100)) for key in extra)
            extra.clear()
        for name, key in _nested_fields(type(node)):
            value = getattr(node, name)
            if isinstance(value, BaseModel | list):
                _collect_unknown(value, _join(path, key), out)
    # Only lists of models (or of lists) can hold unknown keys; skipping scalar lists keeps
    # a 100k-token prompt from being walked.
    elif isinstance(node, list) and node and isinstance(node[0], BaseModel | list):
        for index, item in enumerate(node):
            _collect_unknown(item, f"{path}[{index}]", out)


@functools.cache
def _nested_fields(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """The fields of ``model`` (name, alias) whose values may hold models: a request model has
    dozens of scalar fields, and walking them all was a measurable part of every request."""
    return tuple(
        (name, info.alias or name)
        for name, info in model.model_fields.items()
        if not _scalar(info.annotation)
    )


_SCALARS = (str, int, float, bool, bytes, enum.Enum, type(None))


def _scalar(annotation: Any) -> bool:
    """Whether every value of ``annotation`` is a scalar (never a model nor a list)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return True
    if origin is typing.Annotated:
        return _scalar(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return all(_scalar(arg) for arg in typing.get_args(annotation))
    return isinstance(annotation, type) and origin is None and issubclass(annotation, _SCALARS)


def _join(path: str, key: str) -> str:
    if not path:
        return key
    return f"{path}{key}" if key.startswith("[") else f"{path}.{key}"


def translate_validation_error(exc: ValidationError) -> InvalidRequestError:
    """The client-facing error for the most relevant failure in ``exc``."""
    errors = exc.errors(include_url=False)
    # A missing top-level field is the root cause of anything else that looks wrong.
    error = next((e for e in errors if e["type"] == "missing" and len(e["loc"]) == 1), errors[0])
    param = param_path(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == "pampero":
        param = _join(param, ctx["field"]) if ctx.get("field") else param
        return InvalidRequestError(ctx["message"], param=param or None)
    if error["type"] == "pampero_value":
        return InvalidRequestError(f"Invalid value for '{param}': {ctx['detail']}", param=param)
    if error["type"] == "pampero_tag" and ctx.get("field"):
        return _tag_error(error, param, ctx["field"], ctx["expected"])
    return InvalidRequestError(_describe(error, param or "body"), param=param or None)


def param_path(loc: Sequence[int | str]) -> str:
    """OpenAI's spelling of a validation location: ``messages[0].content[1].type``."""
    path = ""
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
        elif not item.startswith(TAG_OPEN):
            path = _join(path, item)
    return path


def _tag_error(error: ErrorDetails, param: str, key: str, expected: str) -> InvalidRequestError:
    value = error["input"]
    if not isinstance(value, dict):
        return InvalidRequestError(
            f"Invalid type for '{param}': expected an object, but got {_json_type(value)} instead.",
            param=param,
        )
    field = _join(param, key)
    if key not in value:
        return InvalidRequestError(f"Missing required parameter: '{field}'.", param=field)
    return InvalidRequestError(
        f"Invalid value for '{field}': expected {expected}, but got {_show(value[key])} instead.",
        param=field,
    )


_EXPECTED_TYPES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "none_required": "null",
}

_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _describe(error: ErrorDetails, param: str) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error["input"]
    if kind == "missing":
        return f"Missing required parameter: '{param}'."
    if kind in _EXPECTED_TYPES or kind in ("pampero_type", "pampero_tag"):
        expected = ctx.get("expected") or _EXPECTED_TYPES[kind]
        return (
            f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead."
        )
    if kind in _BOUNDS:
        key, symbol = _BOUNDS[kind]
        return (
            f"Invalid value for '{param}': expected a value {symbol} {_number(ctx[key])}, but got "
            f"{_show(value)} instead."
        )
    if kind == "literal_error":
        return (
            f"Invalid value for '{param}': expected {ctx['expected']}, but got {_show(value)} "
            "instead."
        )
    if kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
        return f"Invalid value for '{param}': {_length_message(kind, ctx, value)}."
    if kind == "extra_forbidden":
        return f"Unrecognized parameter '{param}'."
    if kind == "finite_number":
        return f"Invalid value for '{param}': expected a finite number."
    message = error["msg"].removeprefix("Value error, ").replace("Input should be", "expected")
    return f"Invalid value for '{param}': {message}."


def _length_message(kind: str, ctx: dict[str, Any], value: Any) -> str:
    noun = "characters" if kind.startswith("string") else "items"
    if kind.endswith("too_short"):
        if ctx.get("min_length") == 1:
            what = "a non-empty string" if noun == "characters" else "a non-empty array"
            return f"expected {what}"
        return f"expected at least {ctx.get('min_length')} {noun}, but got {len(value)}"
    return f"expected at most {ctx.get('max_length')} {noun}, but got {len(value)}"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return orjson.dumps(value).decode()
    if isinstance(value, int | float):
        return clip(repr(value), 40)
    if isinstance(value, str):
        return repr(clip(value, 40))
    return _json_type(value)
