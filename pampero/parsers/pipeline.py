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

from pampero.parsers.base import (
    IdFactory,
    ParsedDelta,
    ReasoningParser,
    ToolCallDelta,
    ToolParser,
    ToolParserFactory,
    new_call_id,
)
from pampero.parsers.registry import reasoning_parser, tool_parser


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
    ) -> None:
        self._reasoning = reasoning
        self._include_reasoning = include_reasoning
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
            out.add_call_delta(
                ToolCallDelta(piece.index + offset, piece.id, piece.name, piece.arguments)
            )


def create_output_parser(
    *,
    tool_parser_name: str | None = None,
    reasoning_parser_name: str | None = None,
    prompt: str = "",
    enable_thinking: bool | None = None,
    include_reasoning: bool = True,
    id_factory: IdFactory = new_call_id,
) -> OutputParser:
    """The parser for one chat completion, by registered names (``None``: not parsed).

    ``prompt`` is the rendered prompt (its end is enough): it tells whether the template
    opened the reasoning. ``enable_thinking`` is the request's ``chat_template_kwargs`` value;
    ``include_reasoning`` the request's field. Pass no ``tool_parser_name`` when the request
    has no tools or ``tool_choice`` is ``"none"``.
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
    )
