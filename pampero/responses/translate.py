"""A Responses request as the chat completion request every ``ChatBackend`` answers.

Input items become chat messages (``instructions`` a leading developer message, function
calls an assistant message's ``tool_calls``, their outputs ``tool`` messages, a reasoning
item the next assistant message's ``reasoning_content``), flattened function tools become
chat tools, ``text.format`` becomes ``response_format``. Each chat message remembers the
Responses field it came from, so an error the backend raises about ``messages[3]`` names
``input[5]`` instead.

Example::

    plan = to_chat(parsed.request, history=[])
    plan.chat        # {"model": ..., "messages": [...], "stream": True, ...}
    rename_param("messages[1].content[0].image_url.url", plan.origins)   # "input[0]...."
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pampero.errors import UnsupportedParameter
from pampero.responses.protocol import (
    CHAT_EXTRAS,
    CreateResponseRequest,
    FormatJsonObject,
    FormatJsonSchema,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    InputFile,
    InputImage,
    InputText,
    Item,
    ItemReference,
    MessageItem,
    NamedFunction,
    OutputText,
    ReasoningItem,
    Refusal,
)

# Fields a local model has no use for but that change nothing when ignored; passed on to the
# chat request, whose backend reports (or, upstream, forwards) them.
_PASSED = ("user", "safety_identifier", "prompt_cache_key", "service_tier")
# ``include`` values pampero may leave out without changing the answer: reasoning is always
# returned in plain text, so there is no encrypted form to add, and input image URLs are
# always kept.
_HARMLESS_INCLUDES = frozenset({"reasoning.encrypted_content", "message.input_image.image_url"})
# The one ``include`` that changes the answer: the output text's token logprobs.
LOGPROBS = "message.output_text.logprobs"


@dataclass
class ChatPlan:
    """The chat request for one Responses request, and where its messages came from."""

    chat: dict[str, Any]
    origins: list[str]
    ignored: list[str] = field(default_factory=list)


def to_chat(
    request: CreateResponseRequest, history: list[Item], own: list[Item] | None = None
) -> ChatPlan:
    """The chat completion body answering ``request`` after the ``history`` items (those of
    ``previous_response_id``: its input and output, and theirs before them). ``own`` is the
    request's input with its item references resolved (``request.input_items`` when it has
    none)."""
    refuse_unsupported(request)
    messages: list[dict[str, Any]] = []
    origins: list[str] = []
    if request.instructions is not None:
        messages.append({"role": "developer", "content": request.instructions})
        origins.append("instructions")
    _append_items(history, lambda _: "previous_response_id", messages, origins)
    if own is None:
        own = [item for item in request.input_items if not isinstance(item, ItemReference)]
    if isinstance(request.input, str):
        _append_items(own, lambda _: "input", messages, origins)
    else:
        _append_items(own, lambda i: f"input[{i}]", messages, origins)
    chat: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    _add_generation(request, chat)
    _add_tools(request, chat)
    return ChatPlan(chat=chat, origins=origins, ignored=ignored_fields(request))


def refuse_unsupported(request: CreateResponseRequest) -> None:
    """Raise for a field pampero knows but cannot honour."""
    for name in ("conversation", "prompt", "context_management", "moderation"):
        if getattr(request, name) is not None:
            raise UnsupportedParameter(f"'{name}' is not supported by pampero", param=name)
    if request.background:
        raise UnsupportedParameter(
            "background responses are not supported; stream instead", param="background"
        )
    if request.truncation == "auto":
        raise UnsupportedParameter(
            "truncation 'auto' is not supported: a conversation longer than the context is a "
            "400, as with 'disabled'",
            param="truncation",
        )
    if request.max_tool_calls is not None:
        raise UnsupportedParameter("'max_tool_calls' is not supported", param="max_tool_calls")
    check_includes(request.include or [], "include")


def check_includes(values: list[str], param: str) -> None:
    """Refuse the ``include`` values pampero cannot honour."""
    for index, value in enumerate(values):
        if value not in _HARMLESS_INCLUDES and value != LOGPROBS:
            raise UnsupportedParameter(
                f"include value {value!r} is not supported", param=f"{param}[{index}]"
            )


def ignored_fields(request: CreateResponseRequest) -> list[str]:
    """Fields that were sent and accepted but change nothing here."""
    ignored = [f"include[{i}]" for i, v in enumerate(request.include or ()) if v != LOGPROBS]
    if request.text is not None and request.text.verbosity is not None:
        ignored.append("text.verbosity")
    if request.reasoning is not None:
        if request.reasoning.summary is not None:
            ignored.append("reasoning.summary")
        if request.reasoning.generate_summary is not None:
            ignored.append("reasoning.generate_summary")
    if request.top_logprobs is not None and not wants_logprobs(request):
        ignored.append("top_logprobs")
    if request.prompt_cache_retention is not None:
        ignored.append("prompt_cache_retention")
    options = request.stream_options
    if options is not None and options.include_obfuscation:
        ignored.append("stream_options.include_obfuscation")
    return ignored


def wants_logprobs(request: CreateResponseRequest) -> bool:
    return LOGPROBS in (request.include or ())


def _add_generation(request: CreateResponseRequest, chat: dict[str, Any]) -> None:
    if wants_logprobs(request):
        chat["logprobs"] = True
        chat["top_logprobs"] = request.top_logprobs or 0
    sent = request.model_fields_set
    for name in ("temperature", "top_p", *_PASSED, *CHAT_EXTRAS):
        if name in sent and getattr(request, name) is not None:
            chat[name] = getattr(request, name)
    if request.max_output_tokens is not None:
        chat["max_completion_tokens"] = request.max_output_tokens
    if request.reasoning is not None and request.reasoning.effort is not None:
        chat["reasoning_effort"] = request.reasoning.effort
    text_format = request.text.format if request.text is not None else None
    if isinstance(text_format, FormatJsonSchema):
        schema: dict[str, Any] = {"name": text_format.name, "schema": text_format.schema_}
        if text_format.description is not None:
            schema["description"] = text_format.description
        if text_format.strict is not None:
            schema["strict"] = text_format.strict
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(text_format, FormatJsonObject):
        chat["response_format"] = {"type": "json_object"}


def _add_tools(request: CreateResponseRequest, chat: dict[str, Any]) -> None:
    if request.tools:
        chat["tools"] = [chat_tool(tool) for tool in request.tools]
    choice = request.tool_choice
    if isinstance(choice, NamedFunction):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None and (request.tools or choice == "none"):
        chat["tool_choice"] = choice
    if request.parallel_tool_calls is not None and request.tools:
        chat["parallel_tool_calls"] = request.parallel_tool_calls


def tool_strict(tool: FunctionTool) -> bool:
    """Function tools are strict unless they say otherwise, as in OpenAI's Responses API."""
    return True if tool.strict is None else tool.strict


def chat_tool(tool: FunctionTool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "strict": tool_strict(tool)}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    return {"type": "function", "function": function}


class _Assistant:
    """An assistant turn being assembled from consecutive output items."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.text: list[str] = []
        self.refusal: str | None = None
        self.calls: list[dict[str, Any]] = []
        self.reasoning = ""

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant"}
        if self.text or not (self.calls or self.refusal is not None):
            message["content"] = "".join(self.text)
        if self.calls:
            message["tool_calls"] = self.calls
        if self.refusal is not None:
            message["refusal"] = self.refusal
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
        return message


def _append_items(
    items: list[Item],
    origin_of: Any,
    messages: list[dict[str, Any]],
    origins: list[str],
) -> None:
    turn: _Assistant | None = None

    def flush() -> None:
        nonlocal turn
        if turn is not None:
            messages.append(turn.message())
            origins.append(turn.origin)
            turn = None

    for index, item in enumerate(items):
        origin = origin_of(index)
        if isinstance(item, ReasoningItem):
            flush()
            turn = _Assistant(origin)
            turn.reasoning = item.text
        elif isinstance(item, FunctionCallItem):
            turn = turn or _Assistant(origin)
            turn.calls.append(
                {
                    "id": item.call_id,
                    "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments},
                }
            )
        elif isinstance(item, MessageItem) and item.role == "assistant":
            if turn is not None and (turn.text or turn.calls):
                flush()
            turn = turn or _Assistant(origin)
            _assistant_content(item, turn)
        else:
            flush()
            messages.append(_message(item, origin))
            origins.append(origin)
    flush()


def _assistant_content(item: MessageItem, turn: _Assistant) -> None:
    if isinstance(item.content, str):
        turn.text.append(item.content)
        return
    for part in item.content:
        if isinstance(part, OutputText | InputText):
            turn.text.append(part.text)
        elif isinstance(part, Refusal):
            turn.refusal = (turn.refusal or "") + part.refusal


def _message(item: MessageItem | FunctionCallOutputItem, origin: str) -> dict[str, Any]:
    if isinstance(item, FunctionCallOutputItem):
        if isinstance(item.output, str):
            content: Any = item.output
        else:
            content = [_tool_output_part(part, j, origin) for j, part in enumerate(item.output)]
        return {"role": "tool", "tool_call_id": item.call_id, "content": content}
    if isinstance(item.content, str):
        return {"role": item.role, "content": item.content}
    return {"role": item.role, "content": [_input_part(part) for part in item.content]}


def _tool_output_part(part: Any, index: int, origin: str) -> dict[str, Any]:
    if isinstance(part, InputText):
        return {"type": "text", "text": part.text}
    raise UnsupportedParameter(
        f"a function call output may only hold text here, not {part.type!r}",
        param=f"{origin}.output[{index}]",
    )


def _input_part(part: Any) -> dict[str, Any]:
    if isinstance(part, InputText | OutputText):
        return {"type": "text", "text": part.text}
    if isinstance(part, InputImage):
        return {"type": "image_url", "image_url": {"url": part.image_url, "detail": part.detail}}
    if isinstance(part, InputFile):
        file = {
            key: value
            for key, value in (
                ("filename", part.filename),
                ("file_data", part.file_data),
                ("file_id", part.file_id),
            )
            if value is not None
        }
        return {"type": "file", "file": file}
    assert isinstance(part, Refusal)
    return {"type": "refusal", "refusal": part.refusal}


_MESSAGE_PARAM = re.compile(r"^messages\[(\d+)\]")
_TOOL_PARAM = re.compile(r"^tools\[(\d+)\]\.function")
_RENAMED = {
    "max_completion_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "response_format": "text.format",
    "reasoning_effort": "reasoning.effort",
    "logprobs": "include",
    "messages": "input",
}


def rename_param(param: str | None, origins: list[str]) -> str | None:
    """A chat request's field path as the Responses request spells it."""
    if param is None:
        return None
    found = _MESSAGE_PARAM.match(param)
    if found is not None:
        index = int(found.group(1))
        origin = origins[index] if index < len(origins) else "input"
        return origin + param[found.end() :]
    found = _TOOL_PARAM.match(param)
    if found is not None:
        return f"tools[{found.group(1)}]" + param[found.end() :]
    head, dot, rest = param.partition(".")
    if head in _RENAMED:
        return _RENAMED[head] + (dot + rest if head != "response_format" else "")
    return param
