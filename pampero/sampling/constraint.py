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
  be written. A token that is all gap (blanks, ``;``) keeps the place open; any other ends it;
- ``mask_budget``: a ``MaskBudget``, the CPU time its matcher may take per token;
- ``param``: the request field the constraint came from, for errors.

The decode thread works for every sequence in the batch, so one sequence's constraint must not
hold it: the CPU time its matcher takes per token (mask, advance) is measured against its
``MaskBudget``, a token bucket (each token earns ``typical``, the bucket holds at most
``burst``, the costs are paid from it). A constraint that empties it, or whose matcher fails,
ends its own sequence with an error (``Progress.FAILED``, ``ConstraintState.failure``); the
batch goes on. A mask cannot be stopped halfway, so the compiler refuses most such
constraints before they get here, by timing the first masks in its worker
(``pampero.constraints.probe``).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pampero.errors import EngineError, PamperoError, UnsupportedParameter
from pampero.inference import ConstraintMatcher, ConstraintSource


class Progress(enum.Enum):
    CONTINUE = "continue"
    COMPLETE = "complete"  # the constrained output is whole: the sequence ends here
    FAILED = "failed"  # the constraint gave up (``ConstraintState.failure``): end with an error


@dataclass(frozen=True)
class MaskBudget:
    """The CPU time (of the thread that does the work, so a busy machine does not count
    against it) a constraint's matcher may take per token: its mask plus its advance.

    On the decode thread: on average ``typical`` per token, with bursts (a new parser state
    whose mask is computed for the first time) of up to ``burst`` in all. When compiling (the
    probe): a median within ``typical`` and no token past ``probe_ceiling``."""

    typical: float = 0.010
    burst: float = 1.0
    probe_ceiling: float = 0.250

    def describe(self) -> str:
        return (
            f"{self.typical * 1000:g} ms per token on average, with bursts of up to "
            f"{self.burst:g} s"
        )


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

    @property
    def mask_budget(self) -> MaskBudget | None:
        return getattr(self.source, "mask_budget", None)

    @property
    def param(self) -> str | None:
        return getattr(self.source, "param", None)

    @property
    def check_after(self) -> Any:
        """The wrapped constraint's check after generation (a relaxed non-strict schema)."""
        return getattr(self.source, "check_after", None)


class ConstraintState:
    def __init__(self, source: ConstraintSource) -> None:
        self.source = source
        self.triggers: frozenset[int] = getattr(source, "trigger_ids", frozenset())
        self.escapes: frozenset[int] = getattr(source, "escape_ids", frozenset())
        self.rearm: bool = bool(getattr(source, "rearm", False))
        self.budget: MaskBudget | None = getattr(source, "mask_budget", None)
        self.param: str | None = getattr(source, "param", None)
        self.failure: PamperoError | None = None
        self._tokens = 0  # tokens the matcher worked for
        self._spent = 0.0  # CPU seconds they cost
        self._balance = self.budget.burst if self.budget is not None else 0.0
        self._cost = 0.0  # CPU seconds spent on the current token so far
        armed = bool(getattr(source, "armed_at_start", True))
        self.matcher: ConstraintMatcher | None = source.new_matcher() if armed else None
        self.bare: BareCalls | None = getattr(source, "bare", None)
        self._bare_open = self.bare is not None and self.matcher is None  # a call may start bare
        self._bare_matcher: ConstraintMatcher | None = None
        self._probe: npt.NDArray[np.bool_] | None = None
        self._first = True

    def fill_allowed(self, mask: npt.NDArray[np.bool_]) -> bool:
        """Fill ``mask`` if the constraint is active now; False (mask untouched) otherwise.
        A failed constraint allows nothing (``failure`` says why)."""
        if self.failure is not None:
            mask.fill(False)
            return True
        if self.matcher is None:
            return self._bare_open and self._fill_bare(mask)
        started = time.thread_time()
        try:
            self.matcher.fill_allowed(mask)
        except Exception as exc:  # a library's failure ends this sequence, not the batch
            self._fail(exc)
            mask.fill(False)
            return True
        self._cost = time.thread_time() - started
        if self.budget is not None and self._cost > self._balance + self.budget.typical:
            self._over_budget(self._cost, self._spent + self._cost, self._tokens + 1)
            mask.fill(False)
            return True
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
        if self.failure is not None:
            return Progress.FAILED
        first, self._first = self._first, False
        if self.matcher is None:
            self._advance_disarmed(token_id)
            return Progress.CONTINUE
        if first and token_id in self.escapes:
            self.matcher = None
            return Progress.CONTINUE
        started = time.thread_time()
        try:
            if not self.matcher.accept(token_id):
                self._fail(EngineError(f"the constraint refused token {token_id} it had allowed"))
                return Progress.FAILED
            terminated = self.matcher.is_terminated()
        except Exception as exc:
            self._fail(exc)
            return Progress.FAILED
        if self._charge(self._cost + time.thread_time() - started):
            return Progress.FAILED
        if not terminated:
            return Progress.CONTINUE
        if self.rearm:
            self.matcher = None
            self._bare_open = self.bare is not None  # calls in a row: the next may be bare
            return Progress.CONTINUE
        return Progress.COMPLETE

    def _charge(self, cost: float) -> bool:
        """Pay one token's cost from the bucket; True if that ends the constraint."""
        self._cost = 0.0
        budget = self.budget
        if budget is None:
            return False
        self._tokens += 1
        self._spent += cost
        self._balance = min(budget.burst, self._balance + budget.typical) - cost
        if self._balance < 0:
            self._over_budget(cost, self._spent, self._tokens)
            return True
        return False

    def _over_budget(self, cost: float, spent: float, tokens: int) -> None:
        budget = self.budget
        assert budget is not None
        self._fail(
            UnsupportedParameter(
                f"the constraint's token masks cost too much CPU time to serve beside other "
                f"requests ({cost * 1000:.0f} ms for the last token, {spent * 1000:.0f} ms for "
                f"{tokens}; the budget is {budget.describe()}); simplify it or choose another "
                "guided_decoding_backend",
            )
        )

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, PamperoError):
            error = exc
        else:
            error = EngineError(f"the constraint failed: {type(exc).__name__}: {exc}")
        if error.param is None:
            error.param = self.param
        self.failure = error
        self.matcher = None
