"""The types of output parsing: what a parser is fed, what it gives back, and how that folds.

Parsing is streaming-first. A parser is fed the generated text chunk by chunk and answers each
chunk with a :class:`ParsedDelta`; ``finish()`` flushes what it held back at the end. The
non-streamed result is nothing but the deltas folded (:func:`parse_all`), so a streamed and a
non-streamed response cannot disagree, and neither depends on how the text was chunked.

Example::

    parser = HermesToolParser()
    for chunk in engine_text_chunks:
        delta = parser.feed(chunk)          # content / tool-call deltas to stream now
    delta = parser.finish()                 # whatever was held back
    finish_reason = "tool_calls" if parser.tool_calls_found else "stop"

Decisions shared by every tool parser (each parser's module adds its own):

- Text that may start a marker (``<tool_`` at the end of a chunk) is held back until the next
  chunk tells; nothing already emitted is ever taken back.
- Text that does not become a call is content, verbatim, markup included: a body that is not
  JSON, JSON without a ``name``, a call cut off by the end of generation before its name was
  complete. This is what vLLM's and llama.cpp's non-streaming parsers do with what they cannot
  parse.
- Once a call's name is known the call stands. Its ``arguments`` stream as the JSON text the
  model writes, checked by an incremental JSON scanner; if the model breaks the JSON or stops
  mid-call, the valid prefix is closed (``{"a": "x`` becomes ``{"a": "x"}``), so the fragments
  always concatenate to a JSON object, and the text after the break, up to the format's closing
  marker or next call, is dropped as the rest of that call. ``arguments`` is ``"{}"`` when the
  model gives none; arguments written as a JSON string are decoded (and so go out only whole).
- Every call gets a fresh ``call_`` id; ids a model writes are not used.
- Whitespace next to tool-call markup is not content: a whitespace run is held back until
  non-whitespace content follows it; one followed by a call, or left at the end of an output
  that made calls, is dropped. An output without calls keeps all its whitespace.
"""

from __future__ import annotations

import secrets
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

_ID_ALPHABET = string.ascii_letters + string.digits

IdFactory = Callable[[], str]


def new_call_id() -> str:
    """``call_`` and 24 random alphanumerics, like OpenAI's tool-call ids."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass(slots=True)
class ToolCallDelta:
    """One piece of one streamed tool call.

    The first delta of a call carries ``index``, ``id`` and ``name`` (and possibly a first
    argument fragment); later ones carry ``index`` and an ``arguments`` fragment only.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def to_openai(self) -> dict[str, Any]:
        """The ``choices[].delta.tool_calls[]`` item of a chat completion chunk."""
        item: dict[str, Any] = {"index": self.index}
        if self.id is not None:
            item["id"] = self.id
            item["type"] = "function"
        function = {"arguments": self.arguments}
        if self.name is not None:
            function = {"name": self.name, **function}
        item["function"] = function
        return item


@dataclass(slots=True)
class ParsedDelta:
    """What one ``feed`` (or ``finish``) call produced: text for each channel, tool-call pieces."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.tool_calls)

    def add_call_delta(self, delta: ToolCallDelta) -> None:
        """Append ``delta``, merging an argument fragment into the previous piece of its call."""
        last = self.tool_calls[-1] if self.tool_calls else None
        if last is not None and last.index == delta.index and delta.id is None:
            last.arguments += delta.arguments
        elif delta.id is not None or delta.arguments:
            self.tool_calls.append(delta)


@dataclass(slots=True)
class ToolCall:
    """A finished tool call of a non-streamed response."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        """The ``choices[].message.tool_calls[]`` item of a chat completion."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(slots=True)
class ParsedMessage:
    """Deltas folded: the message of a non-streamed response."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)

    def add(self, delta: ParsedDelta) -> None:
        """Fold one more delta in."""
        self.content += delta.content
        self.reasoning += delta.reasoning
        for piece in delta.tool_calls:
            if piece.index == len(self.tool_calls):
                if piece.id is None or piece.name is None:
                    raise ValueError(f"tool call {piece.index} starts without an id and a name")
                self.tool_calls.append(ToolCall(piece.id, piece.name, piece.arguments))
            elif piece.index < len(self.tool_calls) and piece.id is None:
                self.tool_calls[piece.index].arguments += piece.arguments
            else:
                raise ValueError(f"tool-call delta out of order: {piece!r}")


def fold(deltas: Iterable[ParsedDelta]) -> ParsedMessage:
    """Fold a stream of deltas into the message they spell."""
    message = ParsedMessage()
    for delta in deltas:
        message.add(delta)
    return message


@runtime_checkable
class ToolParser(Protocol):
    """Turns generated text into content and tool calls, incrementally.

    Example::

        parser = registry.tool_parser("hermes")()
        parser.feed('<tool_call>\\n{"name": "f", "arguments": {"a"')
        # ParsedDelta(tool_calls=[ToolCallDelta(0, "call_...", "f", '{"a"')])
        parser.feed(': 1}}\\n</tool_call>')
        # ParsedDelta(tool_calls=[ToolCallDelta(0, None, None, ": 1}")])
    """

    def feed(self, text: str) -> ParsedDelta:
        """Consume the next chunk of generated text; return what can be emitted now."""
        ...

    def finish(self) -> ParsedDelta:
        """End of generation: flush what was held back, close an unfinished call."""
        ...

    @property
    def markers(self) -> tuple[str, ...]:
        """The markup it reads: these must reach it as text, so a detokenizer that drops
        special tokens has to keep these."""
        ...

    @property
    def tool_calls_found(self) -> bool:
        """Whether any call was emitted, so the response's finish_reason is ``tool_calls``."""
        ...


class ToolParserFactory(Protocol):
    """A tool parser class: one instance per generated output. It owns its format: the markup
    it reads, and the grammars that make a model write calls in it (Lark with embedded JSON
    Schemas, built with :mod:`pampero.parsers.grammar`), so serving enforces
    ``tool_choice: "required"``, named calls and ``strict`` for any registered format alike.

    Example (the Hermes format)::

        HermesToolParser.call_start                  # "<tool_call>"
        HermesToolParser.bare_call_gap               # " \t\n\r": bare calls in a row
        HermesToolParser.call_rules(functions, strict_only=False, parallel=False)
        # 'calls: "<tool_call>\\n" %json {...} "\\n</tool_call>"\n'
        HermesToolParser.call_grammar(functions, opened=True)
        # 'start: "\\n" %json {...} "\\n</tool_call>"\n'
    """

    @property
    def markers(self) -> tuple[str, ...]: ...

    @property
    def call_start(self) -> str | None:
        """The marker that opens a call (``<tool_call>``), or ``None`` if calls have none. A
        lazy constraint arms when the model writes it, so it must be one token."""
        ...

    @property
    def bare_call_gap(self) -> str | None:
        """Where a call may also be a bare JSON object with no marker (``{"name": ...``), at
        the start of the output and right after another call: the characters that may separate
        such calls (whitespace, ``;``). ``None``: every call starts with ``call_start``."""
        ...

    def call_rules(
        self,
        functions: list[dict[str, Any]],
        *,
        strict_only: bool,
        parallel: bool,
        bare: bool = False,
    ) -> str | None:
        """Lark rules defining ``calls``: text that is only calls of ``functions``, exactly one,
        or one or more when ``parallel``; helper rules are named
        ``call_*``. ``strict_only``: enforce the ``parameters`` of ``strict`` functions only.
        ``bare`` (passed only to formats with a ``bare_call_gap``, when nothing but calls may
        be written): also the bare call objects the parser reads, so a model that writes its
        calls that way is not pushed into another form. ``None``: the format cannot be
        forced."""
        ...

    def call_grammar(self, functions: list[dict[str, Any]], *, opened: bool) -> str | None:
        """A Lark grammar (``start: ...``) for one call enforcing the ``strict`` functions'
        ``parameters``: the text after ``call_start`` up to the call's end (``opened``), or a
        bare call object from its ``{``. ``None``: ``strict`` cannot be enforced lazily."""
        ...

    def __call__(self, *, id_factory: IdFactory = ...) -> ToolParser: ...


@runtime_checkable
class ReasoningParser(Protocol):
    """Splits generated text into reasoning and content, incrementally.

    Its deltas carry ``reasoning`` and ``content``, never tool calls.

    Example::

        parser = registry.reasoning_parser("think")()
        parser.feed("<think>\\nthe user wants")  # ParsedDelta(reasoning="the user wants")
        parser.feed(" a haiku</think>\\n\\nSnow")
        # ParsedDelta(reasoning=" a haiku", content="Snow")
    """

    def feed(self, text: str) -> ParsedDelta:
        """Consume the next chunk of generated text; return what can be emitted now."""
        ...

    def finish(self) -> ParsedDelta:
        """End of generation: flush what was held back."""
        ...

    @property
    def markers(self) -> tuple[str, ...]:
        """The markup it reads (see ``ToolParser.markers``)."""
        ...


class ReasoningParserFactory(Protocol):
    """A reasoning parser class: built from explicit options, or from the rendered prompt.

    It declares its tags, so serving can bind a constraint to the answer after the reasoning
    and read a prompt that opened the reasoning, without knowing the format.
    """

    @property
    def markers(self) -> tuple[str, ...]: ...

    @property
    def open_tag(self) -> str:
        """The tag that opens the reasoning (``<think>``)."""
        ...

    @property
    def close_tag(self) -> str:
        """The tag that ends the reasoning (``</think>``)."""
        ...

    @property
    def starts_open(self) -> bool:
        """Whether the model reasons from its first token even when the prompt does not show
        the opening tag (DeepSeek-R1)."""
        ...

    def __call__(
        self,
        *,
        starts_in_reasoning: bool = ...,
        enabled: bool = ...,
        include_reasoning: bool = ...,
    ) -> ReasoningParser: ...

    def for_prompt(
        self,
        prompt: str,
        *,
        enable_thinking: bool | None = ...,
        include_reasoning: bool = ...,
    ) -> ReasoningParser: ...


class SteppedParser(ABC):
    """A parser written as a state machine over buffered text: the ``feed``/``finish`` loop.

    ``feed`` appends to ``_buf`` and runs ``_step`` until it wants more text; ``finish`` runs it
    once more and hands what is left to ``_flush``. Both put what they produce in ``_delta``,
    which ``_emit`` hands out.
    """

    def __init__(self) -> None:
        self._buf = ""  # text not consumed yet: a partial marker, or input for the next state
        self._delta = ParsedDelta()

    def feed(self, text: str) -> ParsedDelta:
        self._buf += text
        while self._step():
            pass
        return self._emit()

    def finish(self) -> ParsedDelta:
        while self._step():
            pass
        rest, self._buf = self._buf, ""
        self._flush(rest)
        return self._emit()

    @abstractmethod
    def _step(self) -> bool:
        """Advance by one state over ``_buf``; False when more text is needed."""

    @abstractmethod
    def _flush(self, rest: str) -> None:
        """End of generation: settle the current state, with ``rest`` the unconsumed text."""

    def _emit(self) -> ParsedDelta:
        delta, self._delta = self._delta, ParsedDelta()
        return delta


class _Feedable(Protocol):
    def feed(self, text: str) -> ParsedDelta: ...

    def finish(self) -> ParsedDelta: ...


def parse_all(parser: _Feedable, text: str) -> ParsedMessage:
    """The non-streamed result: the whole text fed once, then finished, folded."""
    return fold([parser.feed(text), parser.finish()])
