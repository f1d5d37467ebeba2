"""``<think>...</think>`` reasoning, as written by Qwen3, QwQ and DeepSeek-R1.

    <think>
    The user wants the weather; I know the city.
    </think>

    It is sunny in Paris.

Where the output starts decides what it is, as in llama.cpp:

- by default, reasoning is an opening ``<think>`` at the very start of the output (after blanks);
  otherwise the whole output is content, and a ``<think>`` later on is just text;
- ``starts_in_reasoning``: the chat template opened ``<think>`` in the prompt (DeepSeek-R1,
  QwQ, Qwen3 "thinking" templates), so the output starts inside the reasoning and only the
  closing tag is written; a repeated opening tag is skipped. Output that never closes it was
  cut off mid-thought: all of it is reasoning (what vLLM does);
- ``enabled=False``: the model was asked not to think (``enable_thinking: false``, or the
  template closed an empty think block in the prompt): everything is content, untouched;
- ``include_reasoning=False``: reasoning is parsed out and dropped, never moved to content.

Blanks around the reasoning (after ``<think>``, before ``</think>``) and the blanks that follow
``</think>`` are the template's framing, not text: they are dropped, like Qwen3's own template
does when it renders reasoning back into history.
"""

from __future__ import annotations

from typing import Self

from pampero.parsers.base import ParsedDelta, SteppedParser
from pampero.parsers.calls import partial_suffix, skip_blank
from pampero.parsers.jsonscan import WHITESPACE

OPEN = "<think>"
CLOSE = "</think>"

_START = 0  # the output may open with <think>
_OPENED = 1  # the prompt opened <think>; the output may repeat it
_REASONING = 2
_AFTER = 3  # blanks after </think>
_CONTENT = 4


class ThinkReasoningParser(SteppedParser):
    """Splits ``<think>`` reasoning from content; see the module docstring."""

    open_tag = OPEN
    close_tag = CLOSE
    markers = (OPEN, CLOSE)
    #: Whether the model thinks from the first token even when the prompt does not show it.
    starts_open = False

    def __init__(
        self,
        *,
        starts_in_reasoning: bool = False,
        enabled: bool = True,
        include_reasoning: bool = True,
    ) -> None:
        super().__init__()
        self.include_reasoning = include_reasoning
        if not enabled:
            self._state = _CONTENT
        elif starts_in_reasoning or self.starts_open:
            self._state = _OPENED
        else:
            self._state = _START
        self._blank = ""  # trailing reasoning blanks, kept until more reasoning follows
        self._begun = False  # some reasoning text was seen (blanks before it are framing)

    @classmethod
    def for_prompt(
        cls,
        prompt: str,
        *,
        enable_thinking: bool | None = None,
        include_reasoning: bool = True,
    ) -> Self:
        """A parser for the output that follows ``prompt`` (its rendered text, or its end).

        What the prompt shows wins over ``enable_thinking``: a prompt ending in an open
        ``<think>`` will be answered with reasoning whatever the flag said (templates that
        ignore it), and one ending in a closed think block will not.
        """
        tail = prompt.rstrip(WHITESPACE)
        if tail.endswith(cls.open_tag):
            return cls(starts_in_reasoning=True, include_reasoning=include_reasoning)
        enabled = not tail.endswith(cls.close_tag) and enable_thinking is not False
        return cls(enabled=enabled, include_reasoning=include_reasoning)

    def feed(self, text: str) -> ParsedDelta:
        if self._state == _CONTENT and not self._buf:
            return ParsedDelta(content=text)
        return super().feed(text)

    def _flush(self, rest: str) -> None:
        if self._state == _START:
            self._delta.content += rest
        elif self._state in (_OPENED, _REASONING) and rest.strip(WHITESPACE):
            self._reason(rest)

    def _step(self) -> bool:
        buf = self._buf
        state = self._state
        if state == _CONTENT:
            self._delta.content += buf
            self._buf = ""
            return False
        if state == _REASONING:
            return self._reasoning()
        pos = skip_blank(buf, 0)
        rest = buf[pos:]
        if state == _AFTER:
            self._buf = rest
            if rest:
                self._state = _CONTENT
            return bool(rest)
        if rest.startswith(self.open_tag):
            self._buf = rest[len(self.open_tag) :]
            self._state = _REASONING
            return True
        if self.open_tag.startswith(rest):  # blanks, or a partial tag: wait
            return False
        if state == _OPENED:
            self._buf = rest
            self._state = _REASONING
        else:
            self._state = _CONTENT
        return True

    def _reasoning(self) -> bool:
        buf = self._buf
        end = buf.find(self.close_tag)
        if end >= 0:
            self._reason(buf[:end], closing=True)
            self._buf = buf[end + len(self.close_tag) :]
            self._state = _AFTER
            return True
        cut = len(buf) - partial_suffix(buf, self.close_tag)
        self._reason(buf[:cut])
        self._buf = buf[cut:]
        return False

    def _reason(self, text: str, *, closing: bool = False) -> None:
        if not self._begun:
            text = text.lstrip(WHITESPACE)
            self._begun = bool(text)
        kept = text.rstrip(WHITESPACE)
        if kept:
            self._delta.reasoning += self._blank + kept
            self._blank = "" if closing else text[len(kept) :]
        elif closing:
            self._blank = ""
        else:
            self._blank += text

    def _emit(self) -> ParsedDelta:
        delta = super()._emit()
        if not self.include_reasoning:
            delta.reasoning = ""
        return delta


class DeepSeekR1ReasoningParser(ThinkReasoningParser):
    """DeepSeek-R1 thinks from its first token, whether or not its template wrote ``<think>``
    (the older R1 templates did not, and the model then often skipped it)."""

    starts_open = True
