"""One parser for a chat completion's output: reasoning first, then tool calls in both channels.

The reasoning parser splits the text into reasoning and content; a tool parser then reads the
content, and a second one reads the reasoning, so a call the model wrote while still thinking
is reported as a call (and its markup leaves the reasoning) rather than lost. Calls from the
reasoning come first and are numbered first: the reasoning's tool parser is finished as soon as
content starts, before the content's parser emits anything. A model that writes the same call
in its reasoning and again in its answer makes two calls; nothing is deduplicated.

Example, inside a chat stream::

    parser = create_output_parser(
        tool_parser_name=model.tool_parser,          # None if the request has no tools
        reasoning_parser_name=model.reasoning_parser,
        prompt=prompt_text,                          # or just its last few hundred characters
        enable_thinking=(request.chat_template_kwargs or {}).get("enable_thinking"),
        include_reasoning=request.include_reasoning,
    )
    async for text in engine_text:
        delta = parser.feed(text)
        if delta:
            yield chunk(
                content=delta.content or None,
                reasoning_content=delta.reasoning or None,   # and "reasoning": the same text
                tool_calls=[piece.to_openai() for piece in delta.tool_calls] or None,
            )
    delta = parser.finish()   # then the same, and the finish chunk:
    finish_reason = "tool_calls" if parser.tool_calls_found and reason == "stop" else reason

Non-streamed, the same parser folds: ``message = parse_all(parser, text)`` gives ``content``,
``reasoning`` and ``tool_calls`` (``[call.to_openai() for call in message.tool_calls]``).

The parsers read markup tokens as text: the engine must detokenize with ``parser.markers``
rendered (``[TOOL_CALLS]`` and ``<|python_tag|>`` are special tokens that a
``skip_special_tokens`` detokenizer drops).
"""

from __future__ import annotations

import json
from typing import Any

from pampero.parsers.base import (
    IdFactory,
    ParsedDelta,
    ReasoningParser,
    ToolCall,
    ToolCallDelta,
    ToolParser,
    ToolParserFactory,
    new_call_id,
)
from pampero.parsers.registry import reasoning_parser, tool_parser


def call_key(call: ToolCall) -> tuple[str, Any] | None:
    """What makes two calls the same: the name and the arguments as JSON values (``None``
    while the arguments are not a complete JSON document)."""
    try:
        return call.name, json.loads(call.arguments)
    except json.JSONDecodeError:
        return None


class _Distinct:
    """Drops a call identical to an earlier one; a call named like an earlier one is held back
    until it is complete (the next call starts, or the output ends), then released or dropped.
    The calls that go out are renumbered from 0."""

    def __init__(self) -> None:
        self._done: list[ToolCall] = []  # every call seen, complete
        self._current: ToolCall | None = None
        self._held: list[ToolCallDelta] | None = None  # the current call's pieces, held back
        self._index = -1  # the current call's index in the output

    def push(self, piece: ToolCallDelta, out: ParsedDelta) -> None:
        if piece.id is not None and piece.name is not None:
            self.settle(out)
            self._current = ToolCall(piece.id, piece.name, piece.arguments)
            if any(call.name == piece.name for call in self._done):
                self._held = [piece]
                return
            self._index += 1
        elif self._current is not None:
            self._current.arguments += piece.arguments
            if self._held is not None:
                self._held.append(piece)
                return
        out.add_call_delta(ToolCallDelta(self._index, piece.id, piece.name, piece.arguments))

    def settle(self, out: ParsedDelta) -> None:
        """The current call is complete: release it if it was held and is no repeat."""
        current, held = self._current, self._held
        self._current, self._held = None, None
        if current is None:
            return
        key = call_key(current)
        repeat = key is not None and any(call_key(call) == key for call in self._done)
        self._done.append(current)
        if held is None or repeat:
            return
        self._index += 1
        for piece in held:
            out.add_call_delta(ToolCallDelta(self._index, piece.id, piece.name, piece.arguments))


class OutputParser:
    """A reasoning parser and a tool parser run together; behaves as a ``ToolParser``.

    ``include_reasoning=False`` drops the reasoning here, after its calls were read: give it
    a reasoning parser that keeps its reasoning. Reasoning that comes back after content has
    started (not something ``<think>`` models do) is passed on without looking for calls.
    """

    def __init__(
        self,
        *,
        reasoning: ReasoningParser | None = None,
        tools: ToolParserFactory | None = None,
        include_reasoning: bool = True,
        id_factory: IdFactory = new_call_id,
        distinct_calls: bool = False,
    ) -> None:
        self._reasoning = reasoning
        self._include_reasoning = include_reasoning
        self._distinct = _Distinct() if distinct_calls else None
        self._content_tools: ToolParser | None = None
        self._reasoning_tools: ToolParser | None = None
        if tools is not None:
            self._content_tools = tools(id_factory=id_factory)
            if reasoning is not None:
                self._reasoning_tools = tools(id_factory=id_factory)
        self._reasoning_calls = 0  # calls found in the reasoning: the content's come after
        self._calls = 0

    @property
    def tool_calls_found(self) -> bool:
        return self._calls > 0

    @property
    def markers(self) -> tuple[str, ...]:
        """Every marker its parsers read."""
        found: tuple[str, ...] = ()
        for parser in (self._reasoning, self._content_tools):
            if parser is not None:
                found += parser.markers
        return found

    def feed(self, text: str) -> ParsedDelta:
        out = ParsedDelta()
        if self._reasoning is None:
            self._route(ParsedDelta(content=text), out)
        else:
            self._route(self._reasoning.feed(text), out)
        return out

    def finish(self) -> ParsedDelta:
        out = ParsedDelta()
        if self._reasoning is not None:
            self._route(self._reasoning.finish(), out)
        self._close_reasoning_tools(out)
        if self._content_tools is not None:
            self._merge(self._content_tools.finish(), out, reasoning=False)
        if self._distinct is not None:
            self._distinct.settle(out)
        return out

    def _route(self, part: ParsedDelta, out: ParsedDelta) -> None:
        if part.reasoning:
            if self._reasoning_tools is not None:
                self._merge(self._reasoning_tools.feed(part.reasoning), out, reasoning=True)
            elif self._include_reasoning:
                out.reasoning += part.reasoning
        if part.content:
            self._close_reasoning_tools(out)
            if self._content_tools is not None:
                self._merge(self._content_tools.feed(part.content), out, reasoning=False)
            else:
                out.content += part.content

    def _close_reasoning_tools(self, out: ParsedDelta) -> None:
        """Content started (or the output ended): the reasoning's calls are complete."""
        tools, self._reasoning_tools = self._reasoning_tools, None
        if tools is not None:
            self._merge(tools.finish(), out, reasoning=True)
            self._reasoning_calls = self._calls

    def _merge(self, part: ParsedDelta, out: ParsedDelta, *, reasoning: bool) -> None:
        if reasoning:
            if self._include_reasoning:
                out.reasoning += part.content
        else:
            out.content += part.content
        offset = 0 if reasoning else self._reasoning_calls
        for piece in part.tool_calls:
            if piece.id is not None:
                self._calls += 1
            moved = ToolCallDelta(piece.index + offset, piece.id, piece.name, piece.arguments)
            if self._distinct is not None:
                self._distinct.push(moved, out)
            else:
                out.add_call_delta(moved)


def create_output_parser(
    *,
    tool_parser_name: str | None = None,
    reasoning_parser_name: str | None = None,
    prompt: str = "",
    enable_thinking: bool | None = None,
    include_reasoning: bool = True,
    id_factory: IdFactory = new_call_id,
    distinct_calls: bool = False,
) -> OutputParser:
    """The parser for one chat completion, by registered names (``None``: not parsed).

    ``prompt`` is the rendered prompt (its end is enough): it tells whether the template
    opened the reasoning. ``enable_thinking`` is the request's ``chat_template_kwargs`` value;
    ``include_reasoning`` the request's field. Pass no ``tool_parser_name`` when the request
    has no tools or ``tool_choice`` is ``"none"``. ``distinct_calls``: a call identical to an
    earlier one (name and arguments) is dropped, so ``tool_choice: "required"`` never repeats
    one (a call named like an earlier one then streams only once it is complete).
    """
    reasoning = None
    if reasoning_parser_name is not None:
        reasoning = reasoning_parser(reasoning_parser_name).for_prompt(
            prompt, enable_thinking=enable_thinking, include_reasoning=True
        )
    tools = tool_parser(tool_parser_name) if tool_parser_name is not None else None
    return OutputParser(
        reasoning=reasoning,
        tools=tools,
        include_reasoning=include_reasoning,
        id_factory=id_factory,
        distinct_calls=distinct_calls,
    )
