"""Chat messages, from a JSON body's plain dicts to the shape chat templates expect.

Templates are written against what HF transformers and vLLM hand them, so this follows vLLM's
"string" content format:

- a list of content parts becomes one string, the text parts joined by newlines; a non-text part
  (image, audio, file) goes to a ``MediaPartHandler``, which returns the text that stands for it
  or refuses it (the default refuses: ``model X does not accept image input``);
- ``content: null`` becomes ``""`` (``'\\n' + message.content`` would fail on ``None``), and an
  assistant turn that carries only a ``refusal`` shows the refusal as its content;
- ``developer`` becomes ``system`` unless the template knows the ``developer`` role;
- the legacy ``function`` role becomes ``tool``, and a legacy ``function_call`` a tool call;
- assistant ``tool_calls[].function.arguments`` given as a JSON string is parsed into an object,
  because templates render it with ``arguments | tojson``; a missing or empty one becomes ``{}``;
- ``reasoning`` (vLLM's newer name) is passed to templates as ``reasoning_content``.

Keys a template tests with ``is defined`` or ``in message`` (``tool_calls``, ``name``,
``tool_call_id``, ``reasoning_content``) are present only when the client gave a value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pampero.errors import InvalidRequestError

MediaPartHandler = Callable[[Mapping[str, Any], str], str]
"""Turns one non-text content part into the prompt text that stands for it, or raises.

Called as ``handler(part, param)`` where ``param`` names the part (``messages[2].content[1]``).
Example, for a template that expects a placeholder per image::

    def placeholders(part, param):
        images.append(part)
        return "<image>"
"""

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_TEXT_PART_FIELDS = {"text": "text", "input_text": "text", "refusal": "refusal"}
_MODALITIES = {
    "image_url": "image",
    "input_image": "image",
    "image": "image",
    "input_audio": "audio",
    "audio_url": "audio",
    "video_url": "video",
    "file": "file",
}


def reject_media(model_id: str | None) -> MediaPartHandler:
    """The default handler: this model reads text only."""
    who = f"Model {model_id}" if model_id else "This model"

    def refuse(part: Mapping[str, Any], param: str) -> str:
        modality = _MODALITIES.get(str(part.get("type")), "non-text")
        raise InvalidRequestError(f"{who} does not accept {modality} input.", param=param)

    return refuse


def normalize_messages(
    messages: Any, *, media: MediaPartHandler, developer_role: bool
) -> list[dict[str, Any]]:
    """The template-ready copy of ``messages`` (never modified in place)."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("'messages' must be a non-empty array.", param="messages")
    return [
        _normalize_message(message, f"messages[{i}]", media, developer_role)
        for i, message in enumerate(messages)
    ]


def _normalize_message(
    message: Any, param: str, media: MediaPartHandler, developer_role: bool
) -> dict[str, Any]:
    if not isinstance(message, Mapping):
        raise InvalidRequestError(f"'{param}' must be an object.", param=param)
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequestError(
            f"'{param}.role' must be one of {', '.join(sorted(ROLES))}.", param=f"{param}.role"
        )
    if role == "developer" and not developer_role:
        role = "system"
    elif role == "function":
        role = "tool"
    content = _content_text(message.get("content"), f"{param}.content", media)
    if role == "assistant" and not content and isinstance(message.get("refusal"), str):
        content = message["refusal"]
    out: dict[str, Any] = {"role": role, "content": content}
    for key in ("name", "tool_call_id"):
        _copy_string(message, key, out, param)
    if role == "assistant":
        _assistant_fields(message, out, param)
    return out


def _assistant_fields(message: Mapping[str, Any], out: dict[str, Any], param: str) -> None:
    reasoning = message.get("reasoning_content", message.get("reasoning"))
    if isinstance(reasoning, str):
        out["reasoning_content"] = reasoning
    calls = message.get("tool_calls")
    if calls is None and isinstance(message.get("function_call"), Mapping):
        calls = [{"type": "function", "function": message["function_call"]}]
    if calls is None:
        return
    if not isinstance(calls, list):
        raise InvalidRequestError(
            f"'{param}.tool_calls' must be an array.", param=f"{param}.tool_calls"
        )
    if calls:
        out["tool_calls"] = [_tool_call(c, f"{param}.tool_calls[{j}]") for j, c in enumerate(calls)]


def _tool_call(call: Any, param: str) -> dict[str, Any]:
    if not isinstance(call, Mapping) or not isinstance(call.get("function"), Mapping):
        raise InvalidRequestError(f"'{param}' must be an object with a 'function'.", param=param)
    function = call["function"]
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(
            f"'{param}.function.name' must be a non-empty string.", param=f"{param}.function.name"
        )
    out: dict[str, Any] = {key: value for key, value in call.items() if key != "function"}
    out.setdefault("type", "function")
    out["function"] = {"name": name, "arguments": _arguments(function.get("arguments"), param)}
    return out


def _arguments(arguments: Any, param: str) -> dict[str, Any]:
    where = f"{param}.function.arguments"
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            raise InvalidRequestError(
                f"'{where}' is not valid JSON; tool call arguments must be a JSON object.",
                param=where,
            ) from None
    if not isinstance(arguments, dict):
        raise InvalidRequestError(f"'{where}' must be a JSON object.", param=where)
    return arguments


def _content_text(content: Any, param: str, media: MediaPartHandler) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, Sequence) or isinstance(content, bytes | bytearray):
        raise InvalidRequestError(
            f"'{param}' must be a string or an array of content parts.", param=param
        )
    return "\n".join(_part_text(part, f"{param}[{j}]", media) for j, part in enumerate(content))


def _part_text(part: Any, param: str, media: MediaPartHandler) -> str:
    if not isinstance(part, Mapping):
        raise InvalidRequestError(f"'{param}' must be a content part object.", param=param)
    kind = part.get("type", "text" if "text" in part else None)
    field = _TEXT_PART_FIELDS.get(str(kind))
    if field is None:
        if kind in _MODALITIES:
            return media(part, param)
        raise InvalidRequestError(
            f"'{param}.type' {kind!r} is not a known content part type.", param=f"{param}.type"
        )
    text = part.get(field)
    if not isinstance(text, str):
        raise InvalidRequestError(f"'{param}.{field}' must be a string.", param=f"{param}.{field}")
    return text


def _copy_string(message: Mapping[str, Any], key: str, out: dict[str, Any], param: str) -> None:
    value = message.get(key)
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidRequestError(f"'{param}.{key}' must be a string.", param=f"{param}.{key}")
    out[key] = value
