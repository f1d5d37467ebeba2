"""Tool calling and reasoning for one chat request: what to parse, what to enforce.

- The output parser (``pampero.parsers``) comes from the model config, else from the chat
  template; with ``tool_choice: "none"`` no calls are parsed and the format's opening marker is
  banned, so ``none`` never yields a call.
- ``tool_choice: "required"`` or a named function is enforced with a grammar (Lark with
  embedded JSON Schemas, compiled by the structured-output machinery), so arguments always
  validate against the function's ``parameters``.
- Under ``auto``, functions with ``strict: true`` are enforced lazily: the grammar arms when the
  model opens a call (the ``<tool_call>`` token of the Hermes format) and disarms after it.
- With a reasoning parser, a constraint (a forced call or a response format) arms only after
  the reasoning ends (``</think>``), so it binds the answer and not the thinking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from pampero.constraints.base import ConstraintSpec
from pampero.errors import InvalidRequestError, UnsupportedParameter
from pampero.inference import ConstraintSource, Tokenizer
from pampero.parsers import (
    OutputParser,
    create_output_parser,
    detect_reasoning_parser,
    detect_tool_parser,
    reasoning_parser,
    tool_parser,
)
from pampero.protocol import ChatCompletionRequest
from pampero.protocol.tools import NamedToolChoice
from pampero.sampling.constraint import LazyConstraint
from pampero.serving.hub import ServedModel

_REASONING_END = "</think>"
_HERMES_OPEN = "<tool_call>"


@dataclass
class ToolPlan:
    """Decided once per request; ``new_parser`` is called once per choice."""

    tool_parser: str | None
    reasoning_parser: str | None
    prompt_text: str
    enable_thinking: bool | None
    include_reasoning: bool
    spec: ConstraintSpec | None = None  # a forced or strict tool-call grammar
    lazy_tool_call: bool = False  # the spec is the body of one call, armed by its opening token
    banned_ids: list[int] = field(default_factory=list)
    keep_ids: frozenset[int] = frozenset()

    @property
    def parses(self) -> bool:
        return self.tool_parser is not None or self.reasoning_parser is not None

    def new_parser(self) -> OutputParser:
        return create_output_parser(
            tool_parser_name=self.tool_parser,
            reasoning_parser_name=self.reasoning_parser,
            prompt=self.prompt_text,
            enable_thinking=self.enable_thinking,
            include_reasoning=self.include_reasoning,
        )


def check_tool_messages(request: ChatCompletionRequest) -> None:
    """Every tool message must answer a call an earlier assistant message made."""
    seen: set[str] = set()
    for i, message in enumerate(request.messages):
        for call in getattr(message, "tool_calls", None) or []:
            seen.add(call.id)
        if message.role == "tool" and message.tool_call_id not in seen:
            raise InvalidRequestError(
                f"tool_call_id {message.tool_call_id[:64]!r} answers no tool call of an earlier "
                "assistant message",
                param=f"messages[{i}].tool_call_id",
            )


def _names(served: ServedModel, chat_template: str | None) -> tuple[str | None, str | None]:
    config = served.config
    tools = config.tool_parser or (detect_tool_parser(chat_template) if chat_template else None)
    reasoning = config.reasoning_parser or (
        detect_reasoning_parser(chat_template) if chat_template else None
    )
    if tools == "none":
        tools = None
    if reasoning == "none":
        reasoning = None
    if tools is not None:
        tool_parser(tools)  # an unknown configured name fails loudly here
    if reasoning is not None:
        reasoning_parser(reasoning)
    return tools, reasoning


def plan_tools(
    request: ChatCompletionRequest,
    served: ServedModel,
    chat_template: str | None,
    prompt_text: str,
    tokenizer: Tokenizer,
) -> ToolPlan:
    check_tool_messages(request)
    parser_name, reasoning_name = _names(served, chat_template)
    choice = request.resolved_tool_choice
    functions = _functions(request)
    kwargs = request.chat_template_kwargs or {}
    plan = ToolPlan(
        tool_parser=None,
        reasoning_parser=reasoning_name,
        prompt_text=_as_reasoning_sees_it(request, prompt_text, reasoning_name),
        enable_thinking=kwargs.get("enable_thinking"),
        include_reasoning=request.include_reasoning,
    )
    if functions and choice != "none":
        if parser_name is None:
            raise UnsupportedParameter(
                f"model {served.id} has no known tool-call format; set 'tool_parser' for it in "
                "the server's model config",
                param="tools",
            )
        plan.tool_parser = parser_name
        _enforce(plan, request, functions, choice, tokenizer)
    elif functions and parser_name is not None:
        plan.banned_ids = _single_tokens(tool_parser(parser_name).markers, tokenizer)
    markers = tool_parser(parser_name).markers if plan.tool_parser and parser_name else ()
    plan.keep_ids = frozenset(_single_tokens(markers, tokenizer))
    return plan


def final_message_text(request: ChatCompletionRequest) -> str:
    """The text of the request's last message (its text parts, joined)."""
    content = getattr(request.messages[-1], "content", None)
    if isinstance(content, str):
        return content
    return "".join(getattr(part, "text", "") for part in content or [])


def _as_reasoning_sees_it(
    request: ChatCompletionRequest, prompt_text: str, reasoning_name: str | None
) -> str:
    """The prompt, as far as the reasoning parser and constraints should read it.

    A continued final message that opened the reasoning and has not closed it
    (``<think>\nThe user wants...``) is continued inside the reasoning, just as a prompt that
    ends in the opening tag: the prompt is cut right after that tag, so the parsers see where
    the reasoning began. The rendered prompt ends with that message's text (stripped).
    """
    if reasoning_name is None or not request.continue_final_message:
        return prompt_text
    parser = reasoning_parser(reasoning_name)
    open_tag: str = getattr(parser, "open_tag", "<think>")
    close_tag: str = getattr(parser, "close_tag", _REASONING_END)
    final = final_message_text(request).strip()
    if not prompt_text.endswith(final):
        return prompt_text
    opened = final.rfind(open_tag)
    if opened < 0 or close_tag in final[opened:]:
        return prompt_text
    return prompt_text[: len(prompt_text) - len(final) + opened + len(open_tag)]


def when_to_constrain(
    plan: ToolPlan, compiled: ConstraintSource, tokenizer: Tokenizer, *, param: str
) -> ConstraintSource:
    """Wrap a compiled constraint so that it binds the right part of the output; ``param``
    names the request field the constraint came from, for the 400 when it cannot."""
    if plan.lazy_tool_call:
        return LazyConstraint(
            compiled,
            trigger_ids=_one_token(_HERMES_OPEN, tokenizer, param),
            armed_at_start=False,
            rearm=True,
        )
    if plan.reasoning_parser is None:
        return compiled
    parser = reasoning_parser(plan.reasoning_parser)
    open_tag: str = getattr(parser, "open_tag", "<think>")
    close_tag: str = getattr(parser, "close_tag", _REASONING_END)
    tail = plan.prompt_text.rstrip()
    if tail.endswith(open_tag) or getattr(parser, "starts_open", False):
        return LazyConstraint(
            compiled, trigger_ids=_one_token(close_tag, tokenizer, param), armed_at_start=False
        )
    if tail.endswith(close_tag) or plan.enable_thinking is False:
        return compiled
    # The model may or may not think first: armed, but an opening tag as the first token
    # postpones the constraint until the reasoning closes.
    return LazyConstraint(
        compiled,
        trigger_ids=_one_token(close_tag, tokenizer, param),
        escape_ids=_one_token(open_tag, tokenizer, param),
    )


def _functions(request: ChatCompletionRequest) -> list[dict[str, Any]]:
    if request.tools:
        return [t.function.model_dump(exclude_none=True) for t in request.tools]
    if request.functions:
        return [f.model_dump(exclude_none=True) for f in request.functions]
    return []


def _enforce(
    plan: ToolPlan,
    request: ChatCompletionRequest,
    functions: list[dict[str, Any]],
    choice: Any,
    tokenizer: Tokenizer,
) -> None:
    legacy = request.function_call
    if isinstance(choice, NamedToolChoice):
        forced = [f for f in functions if f["name"] == choice.function.name]
    elif legacy is not None and not isinstance(legacy, str):
        forced = [f for f in functions if f["name"] == legacy.name]
    elif choice == "required":
        forced = functions
    else:
        forced = []
    if forced:
        if request.constraint_fields():
            raise InvalidRequestError(
                "a forced tool call cannot be combined with another structured-output constraint",
                param=request.constraint_fields()[0],
            )
        parallel = request.parallel_tool_calls is not False and len(forced) > 0
        plan.spec = _grammar_spec(plan.tool_parser, forced, parallel=parallel and not legacy)
        return
    strict = [f for f in functions if f.get("strict")]
    lazy_ok = (
        plan.tool_parser == "hermes"
        and not request.constraint_fields()
        and plan.reasoning_parser is None
        and len(tokenizer.encode(_HERMES_OPEN)) == 1
    )
    if strict and lazy_ok:
        plan.spec = _hermes_call_body(functions)
        plan.lazy_tool_call = True


def _call_schema(function: dict[str, Any], arguments_key: str) -> dict[str, Any]:
    parameters = function.get("parameters") or {"type": "object"}
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, arguments_key: parameters},
        "required": ["name", arguments_key],
        "additionalProperties": False,
    }


def _schema_json(schema: dict[str, Any]) -> str:
    try:
        return orjson.dumps(schema).decode()
    except orjson.JSONEncodeError:  # orjson stops at 254 levels; constraints allow 128
        raise InvalidRequestError(
            "a function's parameters schema nests too deep to be enforced", param="tools"
        ) from None


def _one_of_calls(functions: list[dict[str, Any]], arguments_key: str) -> str:
    schemas = [_call_schema(f, arguments_key) for f in functions]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return _schema_json(schema)


def _grammar_spec(
    parser: str | None, functions: list[dict[str, Any]], *, parallel: bool
) -> ConstraintSpec:
    if parser == "hermes":
        call = f'"<tool_call>\\n" %json {_one_of_calls(functions, "arguments")} "\\n</tool_call>"'
        start = 'call ("\\n" call)*' if parallel else "call"
        grammar = f"start: {start}\ncall: {call}\n"
    elif parser == "llama3_json":
        grammar = f"start: %json {_one_of_calls(functions, 'parameters')}\n"
    else:
        raise UnsupportedParameter(
            f"a forced tool call is not available for the {parser} tool-call format",
            param="tool_choice",
        )
    return ConstraintSpec(
        kind="grammar",
        value=grammar,
        param="tool_choice",
        grammar_syntax="lark",
        backend="guidance",
    )


def _hermes_call_body(functions: list[dict[str, Any]]) -> ConstraintSpec:
    schemas = [
        _call_schema(f, "arguments")
        if f.get("strict")
        else {
            "type": "object",
            "properties": {"name": {"const": f["name"]}, "arguments": {"type": "object"}},
            "required": ["name", "arguments"],
        }
        for f in functions
    ]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    grammar = f'start: "\\n" %json {_schema_json(schema)} "\\n</tool_call>"\n'
    return ConstraintSpec(
        kind="grammar", value=grammar, param="tools", grammar_syntax="lark", backend="guidance"
    )


def _single_tokens(markers: tuple[str, ...], tokenizer: Tokenizer) -> list[int]:
    ids = []
    for marker in markers:
        tokens = tokenizer.encode(marker)
        if len(tokens) == 1:
            ids.append(tokens[0])
    return ids


def _one_token(text: str, tokenizer: Tokenizer, param: str) -> frozenset[int]:
    tokens = tokenizer.encode(text)
    if len(tokens) != 1:
        raise UnsupportedParameter(
            f"this model writes {text!r} as several tokens, so a constraint cannot wait for it",
            param=param,
        )
    return frozenset(tokens)
