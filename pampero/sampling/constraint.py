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
  it, completing the constraint completes the sequence;
- ``bare`` (:class:`BareCalls`): tool calls may also start without a trigger, as a bare JSON
  object, at the start of the output and right after a call. There the mask lets through every
  token that does not begin with ``{``, and of those that do, only the ones ``bare.source``
  allows: a call is bound from its first token, and a ``{`` that begins no valid call cannot
  be written. A token that is all gap (blanks, ``;``) keeps the place open; any other ends it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pampero.engines.base import ConstraintMatcher, ConstraintSource
from pampero.errors import EngineError


class Progress(enum.Enum):
    CONTINUE = "continue"
    COMPLETE = "complete"  # the constrained output is whole: the sequence ends here


@dataclass(frozen=True, eq=False)
class BareCalls:
    """Tool calls written with no opening marker (see the module docstring)."""

    source: ConstraintSource  # one call, from its "{"
    opens: npt.NDArray[np.bool_]  # per token: its text begins with "{"
    gap_ids: frozenset[int]  # tokens whose text is only characters that may separate calls
    reopen_ids: frozenset[int] = frozenset()  # after these (``</think>``) a call may start bare


@dataclass
class LazyConstraint:
    """A compiled constraint plus when it applies (see the module docstring)."""

    source: ConstraintSource
    trigger_ids: frozenset[int] = frozenset()
    armed_at_start: bool = True
    escape_ids: frozenset[int] = frozenset()
    rearm: bool = False
    bare: BareCalls | None = None

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
        self.bare: BareCalls | None = getattr(source, "bare", None)
        self._bare_open = self.bare is not None and self.matcher is None  # a call may start bare
        self._bare_matcher: ConstraintMatcher | None = None
        self._probe: npt.NDArray[np.bool_] | None = None
        self._first = True

    def fill_allowed(self, mask: npt.NDArray[np.bool_]) -> bool:
        """Fill ``mask`` if the constraint is active now; False (mask untouched) otherwise."""
        if self.matcher is None:
            return self._bare_open and self._fill_bare(mask)
        self.matcher.fill_allowed(mask)
        if self._first and self.escapes:
            mask[list(self.escapes)] = True
        return True

    def _fill_bare(self, mask: npt.NDArray[np.bool_]) -> bool:
        bare = self.bare
        assert bare is not None
        if self._bare_matcher is None:
            self._bare_matcher = bare.source.new_matcher()
        if self._probe is None or self._probe.shape != mask.shape:
            self._probe = np.zeros_like(mask)
        self._bare_matcher.fill_allowed(self._probe)
        opens = bare.opens[: mask.shape[0]]
        np.logical_not(opens, out=mask[: opens.shape[0]])
        mask[opens.shape[0] :] = True
        mask[: opens.shape[0]] |= self._probe[: opens.shape[0]] & opens
        return True

    def _advance_disarmed(self, token_id: int) -> None:
        bare = self.bare
        if token_id in self.triggers:
            self.matcher = self.source.new_matcher()
            self._bare_open = False
        elif bare is None:
            return
        elif not self._bare_open:
            self._bare_open = token_id in bare.reopen_ids
        elif token_id < bare.opens.shape[0] and bare.opens[token_id]:
            matcher = self._bare_matcher or bare.source.new_matcher()
            self._bare_matcher = None
            if not matcher.accept(token_id):
                raise EngineError(f"the constraint refused token {token_id} it had allowed")
            self.matcher = matcher
            self._bare_open = False
        elif token_id not in bare.gap_ids:
            self._bare_open = False

    def advance(self, token_id: int) -> Progress:
        first, self._first = self._first, False
        if self.matcher is None:
            self._advance_disarmed(token_id)
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
            self._bare_open = self.bare is not None  # calls in a row: the next may be bare
            return Progress.CONTINUE
        return Progress.COMPLETE
