"""A sequence's structured-output constraint over time: armed at once, or lazily.

A plain constraint holds from the first generated token to its end. A source may also say
(attributes, all optional):

- ``trigger_ids``: while disarmed, emitting one of these tokens arms the constraint, e.g.
  ``</think>`` so that a JSON schema binds the answer and not the reasoning, or
  ``<tool_call>`` so that a strict function's arguments must match once the model opens a call;
- ``armed_at_start`` (default: True unless there are triggers);
- ``escape_ids``: tokens allowed as the very first token of an armed constraint that disarm it
  until a trigger, e.g. ``<think>`` for a model that may or may not reason first;
- ``rearm``: a completed constraint waits for the next trigger (several tool calls); without
  it, completing the constraint completes the sequence.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pampero.errors import EngineError
from pampero.inference import ConstraintMatcher, ConstraintSource


class Progress(enum.Enum):
    CONTINUE = "continue"
    COMPLETE = "complete"  # the constrained output is whole: the sequence ends here


@dataclass
class LazyConstraint:
    """A compiled constraint plus when it applies (see the module docstring)."""

    source: ConstraintSource
    trigger_ids: frozenset[int] = frozenset()
    armed_at_start: bool = True
    escape_ids: frozenset[int] = frozenset()
    rearm: bool = False

    def new_matcher(self) -> ConstraintMatcher:
        return self.source.new_matcher()


class ConstraintState:
    def __init__(self, source: ConstraintSource) -> None:
        self.source = source
        self.triggers: frozenset[int] = getattr(source, "trigger_ids", frozenset())
        self.escapes: frozenset[int] = getattr(source, "escape_ids", frozenset())
        self.rearm: bool = bool(getattr(source, "rearm", False))
        armed = bool(getattr(source, "armed_at_start", True))
        self.matcher: ConstraintMatcher | None = source.new_matcher() if armed else None
        self._first = True

    def fill_allowed(self, mask: npt.NDArray[np.bool_]) -> bool:
        """Fill ``mask`` if the constraint is active now; False (mask untouched) otherwise."""
        if self.matcher is None:
            return False
        self.matcher.fill_allowed(mask)
        if self._first and self.escapes:
            mask[list(self.escapes)] = True
        return True

    def advance(self, token_id: int) -> Progress:
        first, self._first = self._first, False
        if self.matcher is None:
            if token_id in self.triggers:
                self.matcher = self.source.new_matcher()
            return Progress.CONTINUE
        if first and token_id in self.escapes:
            self.matcher = None
            return Progress.CONTINUE
        if not self.matcher.accept(token_id):
            raise EngineError(f"the constraint refused token {token_id} it had allowed")
        if not self.matcher.is_terminated():
            return Progress.CONTINUE
        if self.rearm:
            self.matcher = None
            return Progress.CONTINUE
        return Progress.COMPLETE
