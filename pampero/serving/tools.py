"""Tool calling and reasoning for one chat request: what to parse, what to enforce.

Serving never names a format: the tool parser and the reasoning parser chosen for the model
declare their markup and build the grammars (``pampero.parsers.base.ToolParserFactory``), so a
plugin's format is enforced exactly as a built-in one.

- The output parser (``pampero.parsers``) comes from the model config, else from the chat
  template; with ``tool_choice: "none"`` no calls are parsed, the tools are left out of the
  prompt (``pampero.serving.prompt``), the format's markers are banned, and in a format with
  bare calls no line may open a JSON object (``NO_CALL_TEXT``), so ``none`` never yields a
  call, nor call JSON in ``content``.
- ``tool_choice: "required"`` or a named function is enforced with the format's grammar (Lark
  with embedded JSON Schemas, compiled by the structured-output machinery), so arguments always
  validate against the function's ``parameters``: a named function (or
  ``parallel_tool_calls: false``) gives exactly one call, ``required`` one or more.
- Under ``auto``, functions with ``strict: true`` are enforced lazily, from the first token of
  a call: the grammar arms when the model writes the format's ``call_start`` marker, or, for
  formats with bare calls, when it begins a ``{`` at the start of the output or after a call;
  it disarms after the call. A format that cannot enforce ``strict`` is a 400 on ``tools``.
- Under ``auto`` with a JSON answer format (``response_format`` and its spellings), one
  grammar binds the output to calls (``strict`` arguments enforced) or an answer in the format.
  An answer schema without ``strict`` that the grammar cannot hold whole is relaxed inside it
  and the answer checked after generation, as the schema alone would be (``CallsOrAnswer``).
- With a reasoning parser, a constraint (a forced call or a response format) arms only after
  the reasoning ends (its ``close_tag``), so it binds the answer and not the thinking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pampero.constraints.base import ConstraintSpec
from pampero.errors import InvalidRequestError, UnsupportedParameter
from pampero.inference import ConstraintSource, SamplingParams, Tokenizer
from pampero.parsers import (
    OutputParser,
    ToolParserFactory,
    create_output_parser,
    detect_reasoning_parser,
    detect_tool_parser,
    reasoning_parser,
    tool_parser,
)
from pampero.protocol import ChatCompletionRequest
from pampero.protocol.tools import NamedToolChoice
from pampero.sampling.constraint import BareCalls, LazyConstraint
from pampero.serving.hub import ServedModel
from pampero.serving.repeats import DistinctCalls
from pampero.serving.structured import Constraints, constraint_spec

# ``tool_choice: "none"`` in a format whose calls may be bare JSON: no line of the answer may
# open a JSON object or array (at its start, indented, or right after a code fence's first
# line), and ``<tool_call>`` may not appear. A small model that has seen calls in the
# conversation writes one anyway, with or without tags or a fence, and with a narrower ban
# (no ``{"name":``) it writes ``{"name" "add", ...}`` or ``{name: "add"``; this one leaves
# it prose. For a JSON answer, send a ``response_format``: it binds the output instead.
_OPENS_JSON = r"[ \t]*(```[^\n]*\n[ \t]*)?[{\[]"
NO_CALL_TEXT = (
    f"start: TEXT\nTEXT: /(?s:.*)/ & ~/(?s:({_OPENS_JSON}|.*\\n{_OPENS_JSON}|.*<tool_call>).*)/\n"
)


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
    bare_spec: ConstraintSpec | None = None  # one call written as a bare object, from its "{"
    bare_gap: str | None = None  # what may separate bare calls in a row
    distinct_calls: bool = False  # forced parallel calls: an identical repeat ends the output
    around: CallsOrAnswer | None = None  # ``spec`` is calls or an answer in this schema
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
            distinct_calls=self.distinct_calls,
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
        if tool_parser(parser_name).bare_call_gap is not None and not request.constraint_fields():
            plan.spec = _lark(NO_CALL_TEXT, "tool_choice")
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
    open_tag, close_tag = parser.open_tag, parser.close_tag
    final = final_message_text(request).strip()
    if not prompt_text.endswith(final):
        return prompt_text
    opened = final.rfind(open_tag)
    if opened < 0 or close_tag in final[opened:]:
        return prompt_text
    return prompt_text[: len(prompt_text) - len(final) + opened + len(open_tag)]


def when_to_constrain(
    plan: ToolPlan,
    compiled: ConstraintSource,
    tokenizer: Tokenizer,
    *,
    param: str,
    bare: BareCalls | None = None,
) -> ConstraintSource:
    """Wrap a compiled constraint so that it binds the right part of the output; ``param``
    names the request field the constraint came from, for the 400 when it cannot."""
    reasoning = reasoning_parser(plan.reasoning_parser) if plan.reasoning_parser else None
    if plan.lazy_tool_call:
        start = tool_parser(plan.tool_parser).call_start if plan.tool_parser else None
        assert start is not None
        if bare is not None and reasoning is not None:
            reopen = _one_token(reasoning.close_tag, tokenizer, param)
            bare = BareCalls(bare.source, bare.opens, bare.gap_ids, reopen_ids=reopen)
        return LazyConstraint(
            compiled,
            trigger_ids=_one_token(start, tokenizer, param),
            armed_at_start=False,
            rearm=True,
            bare=bare,
        )
    if reasoning is None:
        return compiled
    open_tag, close_tag = reasoning.open_tag, reasoning.close_tag
    tail = plan.prompt_text.rstrip()
    if tail.endswith(open_tag) or reasoning.starts_open:
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


async def constrain(
    plan: ToolPlan,
    request: ChatCompletionRequest,
    served: ServedModel,
    constraints: Constraints,
    params: SamplingParams,
) -> ConstraintSource | None:
    """The request's constraint (a tool-call grammar, else its structured-output fields),
    compiled and wrapped to bind the right part of the output; ``None`` if it has none."""
    spec = plan.spec or constraint_spec(request)
    if spec is None:
        return None
    compiled: ConstraintSource
    if plan.around is not None:
        around = plan.around
        compiled = await constraints.compile_around(served, around.answer, around.spec, params)
    else:
        compiled = await constraints.compile(served, spec, params)
    tokenizer = served.engine.tokenizer
    if plan.distinct_calls and plan.tool_parser is not None:
        compiled = DistinctCalls(compiled, tool_parser(plan.tool_parser), tokenizer)
    bare = None
    if plan.bare_spec is not None and plan.bare_gap is not None:
        bare_compiled = await constraints.compile(served, plan.bare_spec, params)
        openers = constraints.call_openers(served, plan.bare_gap)
        bare = BareCalls(bare_compiled, openers.opens, openers.gap_ids)
    return when_to_constrain(plan, compiled, tokenizer, param=spec.param, bare=bare)


def _functions(request: ChatCompletionRequest) -> list[dict[str, Any]]:
    if request.tools:
        return [t.function.model_dump(exclude_none=True) for t in request.tools]
    if request.functions:
        return [f.model_dump(exclude_none=True) for f in request.functions]
    return []


def _forced(
    request: ChatCompletionRequest, functions: list[dict[str, Any]], choice: Any
) -> tuple[list[dict[str, Any]], bool]:
    """The functions a call is forced among, and whether several calls may be made."""
    legacy = request.function_call
    if isinstance(choice, NamedToolChoice):
        return [f for f in functions if f["name"] == choice.function.name], False
    if legacy is not None and not isinstance(legacy, str):
        return [f for f in functions if f["name"] == legacy.name], False
    if choice == "required":
        return functions, request.parallel_tool_calls is not False and legacy is None
    return [], False


def _enforce(
    plan: ToolPlan,
    request: ChatCompletionRequest,
    functions: list[dict[str, Any]],
    choice: Any,
    tokenizer: Tokenizer,
) -> None:
    assert plan.tool_parser is not None
    factory = tool_parser(plan.tool_parser)
    forced, parallel = _forced(request, functions, choice)
    if forced:
        if request.constraint_fields():
            raise InvalidRequestError(
                "a forced tool call cannot be combined with another structured-output constraint",
                param=request.constraint_fields()[0],
            )
        forms = {"bare": True} if factory.bare_call_gap is not None else {}
        rules = factory.call_rules(forced, strict_only=False, parallel=parallel, **forms)
        if rules is None:
            raise UnsupportedParameter(
                f"a forced tool call is not available for the {plan.tool_parser} tool-call format",
                param="tool_choice",
            )
        plan.spec = _lark(f"start: calls\n{rules}", "tool_choice")
        plan.distinct_calls = parallel
        return
    if request.constraint_fields():
        _with_answer_format(plan, request, factory, functions)
        return
    if not any(f.get("strict") for f in functions):
        return
    start = factory.call_start
    body = factory.call_grammar(functions, opened=True)
    if body is None or start is None or len(tokenizer.encode(start)) != 1:
        raise UnsupportedParameter(
            f"'strict' functions cannot be enforced in the {plan.tool_parser} tool-call format "
            "of this model; send them without 'strict'",
            param="tools",
        )
    plan.spec = _lark(body, "tools")
    plan.lazy_tool_call = True
    gap = factory.bare_call_gap
    bare = factory.call_grammar(functions, opened=False) if gap is not None else None
    if bare is not None:
        plan.bare_spec = _lark(bare, "tools")
        plan.bare_gap = gap


def _with_answer_format(
    plan: ToolPlan,
    request: ChatCompletionRequest,
    factory: ToolParserFactory,
    functions: list[dict[str, Any]],
) -> None:
    """Under ``auto``, tools and a JSON answer format: the output is calls (``strict``
    functions' arguments enforced) or an answer in the format, both bound by one grammar."""
    answer = constraint_spec(request)
    assert answer is not None
    rules = factory.call_rules(functions, strict_only=True, parallel=True)
    if (
        rules is None
        or answer.kind not in ("json_schema", "json_object")
        or (answer.backend not in ("auto", "guidance") or answer.whitespace_pattern is not None)
    ):
        if not any(f.get("strict") for f in functions):
            return  # the answer format alone binds the output, as without tools
        raise UnsupportedParameter(
            f"{answer.param} cannot be combined with tool calls in the {plan.tool_parser} "
            "format: only a JSON schema or JSON object answer format can be enforced together "
            "with the calls; send tool_choice 'none' to answer in the format",
            param=answer.param,
        )
    if answer.kind == "json_schema":
        plan.around = CallsOrAnswer(answer, rules)
        plan.spec = plan.around.spec(answer.value)
    else:
        plan.spec = CallsOrAnswer(answer, rules).spec('{"type": "object"}')


@dataclass(frozen=True)
class CallsOrAnswer:
    """The grammar of calls or an answer in a JSON schema, rebuilt around a relaxed schema
    when a non-strict one cannot be compiled whole (``ConstraintCompiler.
    compile_around_schema``), exactly as the schema alone would be."""

    answer: ConstraintSpec  # the answer format
    rules: str  # the format's call rules

    def spec(self, schema_text: str) -> ConstraintSpec:
        grammar = f"start: calls | call_answer\ncall_answer: %json {schema_text}\n{self.rules}"
        return _lark(grammar, self.answer.param)


def _lark(grammar: str, param: str) -> ConstraintSpec:
    return ConstraintSpec(
        kind="grammar", value=grammar, param=param, grammar_syntax="lark", backend="guidance"
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
