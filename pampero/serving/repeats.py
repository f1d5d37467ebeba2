"""``tool_choice: "required"`` gives distinct calls: an identical repeat ends the output.

A grammar can say "one or more calls", not "each different from the ones before", and a small
model that has made a call likes to make it again, identically, until ``max_tokens`` (Qwen2.5
0.5B does, after a ``"\\n"``). So the forced grammar's matcher is wrapped: it reads the calls
the model writes with the format's own parser, and the moment a call's arguments are complete
and the call (name and arguments, as JSON values) equals an earlier one, it reports the
constraint complete, which ends the sequence (``finish_reason`` ``tool_calls``). The output
parser built with ``distinct_calls`` then drops that repeat (``pampero.parsers.pipeline``).

Example::

    source = DistinctCalls(compiled, tool_parser("hermes"), tokenizer)
    matcher = source.new_matcher()   # per sequence; accept() / is_terminated() as usual
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pampero.inference import ConstraintMatcher, ConstraintSource, Tokenizer
from pampero.parsers import ParsedMessage, ToolParserFactory
from pampero.parsers.pipeline import call_key


@dataclass(frozen=True, eq=False)
class DistinctCalls:
    """A forced-calls constraint whose output ends at the first identical repeat."""

    source: ConstraintSource
    parser: ToolParserFactory
    tokenizer: Tokenizer

    def new_matcher(self) -> ConstraintMatcher:
        return _Matcher(self.source.new_matcher(), self.parser, self.tokenizer)


class _Matcher:
    def __init__(
        self, inner: ConstraintMatcher, parser: ToolParserFactory, tokenizer: Tokenizer
    ) -> None:
        self._inner = inner
        self._parser = parser()
        self._tokenizer = tokenizer
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._calls = ParsedMessage()
        self._repeated = False

    def fill_allowed(self, mask: npt.NDArray[np.bool_]) -> None:
        self._inner.fill_allowed(mask)

    def accept(self, token_id: int) -> bool:
        if not self._inner.accept(token_id):
            return False
        text = self._decoder.decode(self._tokenizer.token_bytes(token_id))
        if text:
            self._calls.add(self._parser.feed(text))
            self._repeated = self._last_call_repeats()
        return True

    def is_terminated(self) -> bool:
        return self._repeated or self._inner.is_terminated()

    def _last_call_repeats(self) -> bool:
        calls = self._calls.tool_calls
        if len(calls) < 2 or not calls[-1].arguments.endswith("}"):
            return False
        last = call_key(calls[-1])
        return last is not None and any(call_key(call) == last for call in calls[:-1])
