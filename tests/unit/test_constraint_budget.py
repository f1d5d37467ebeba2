"""A constraint over its CPU budget, or whose matcher fails, ends its own sequence with an error
on the decode thread; the other sequences in the batch go on (``sampling/constraint.py``).

The scheduler runs over the fake runner; the constraints are real matchers that spend real CPU
time (measured with ``time.thread_time``, as the decode thread measures them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pampero.errors import EngineError, UnsupportedParameter
from pampero.sampling.constraint import ConstraintState, MaskBudget, Progress
from tests.fakes import SchedulerHarness

BUDGET = MaskBudget(typical=0.004, burst=0.040)
LETTERS = range(ord("a"), ord("z") + 1)


def burn(seconds: float) -> None:
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


@dataclass
class Letters:
    """Allows any lowercase letter, for ``length`` letters then only the end (256). Its mask
    for token ``i`` costs ``costs.get(i, 0)`` CPU seconds; ``raise_at`` makes it fail."""

    length: int = 8
    costs: dict[int, float] = field(default_factory=dict)
    raise_at: int | None = None
    refuse_at: int | None = None
    taken: int = 0

    def fill_allowed(self, mask: Any) -> None:
        burn(self.costs.get(self.taken, 0.0))
        if self.raise_at == self.taken:
            raise RuntimeError("the library gave up")
        mask.fill(False)
        if self.taken < self.length:
            mask[list(LETTERS)] = True
        else:
            mask[256] = True

    def accept(self, token_id: int) -> bool:
        if self.refuse_at == self.taken:
            return False
        self.taken += 1
        return True

    def is_terminated(self) -> bool:
        return self.taken > self.length


@dataclass
class Source:
    make: Any
    mask_budget: MaskBudget | None = BUDGET
    param: str = "guided_regex"

    def new_matcher(self) -> Any:
        return self.make()


def run_beside_a_plain_request(source: Source) -> tuple[Any, Any]:
    harness = SchedulerHarness()
    constrained = harness.submit("go", max_tokens=20, constraint=source)
    plain = harness.submit("hi", max_tokens=12)
    harness.run()
    return constrained, plain


def last_error(sink: Any) -> Any:
    return sink.deltas()[-1].error


def test_a_constraint_within_its_budget_runs_to_its_end() -> None:
    constrained, plain = run_beside_a_plain_request(Source(lambda: Letters(costs={2: 0.002})))
    assert last_error(constrained) is None
    assert constrained.finish() == ("stop", None)
    assert len(constrained.text()) == 8
    assert len(plain.token_ids()) == 12


def test_one_token_past_the_burst_ends_that_sequence_with_a_400() -> None:
    constrained, plain = run_beside_a_plain_request(Source(lambda: Letters(costs={3: 0.060})))
    error = last_error(constrained)
    assert isinstance(error, UnsupportedParameter)
    assert error.param == "guided_regex" and "CPU time" in error.message
    assert len(constrained.token_ids()) == 3  # nothing after the costly mask
    assert plain.error is None and len(plain.token_ids()) == 12  # the batch went on


def test_tokens_past_the_typical_cost_use_up_the_burst_and_end_that_sequence() -> None:
    costs = dict.fromkeys(range(20), 0.012)  # 8 ms past typical each: 40 ms last 5 tokens
    constrained, plain = run_beside_a_plain_request(Source(lambda: Letters(length=15, costs=costs)))
    assert isinstance(last_error(constrained), UnsupportedParameter)
    assert 3 <= len(constrained.token_ids()) <= 6
    assert len(plain.token_ids()) == 12


def test_a_burst_is_paid_back_by_cheap_tokens() -> None:
    costs = {1: 0.030, 9: 0.030}  # each within the burst, with cheap tokens between
    constrained, _ = run_beside_a_plain_request(Source(lambda: Letters(length=14, costs=costs)))
    assert last_error(constrained) is None
    assert len(constrained.text()) == 14


def test_a_failing_matcher_ends_that_sequence_not_the_batch() -> None:
    constrained, plain = run_beside_a_plain_request(Source(lambda: Letters(raise_at=2)))
    error = last_error(constrained)
    assert isinstance(error, EngineError) and "the library gave up" in error.message
    assert error.param == "guided_regex"
    assert len(plain.token_ids()) == 12


def test_a_matcher_refusing_a_token_it_allowed_ends_that_sequence_not_the_batch() -> None:
    constrained, plain = run_beside_a_plain_request(Source(lambda: Letters(refuse_at=4)))
    assert isinstance(last_error(constrained), EngineError)
    assert len(plain.token_ids()) == 12


def test_without_a_budget_nothing_is_timed() -> None:
    state = ConstraintState(Source(lambda: Letters(costs={0: 0.060}), mask_budget=None))
    mask = np.zeros(260, dtype=np.bool_)
    assert state.fill_allowed(mask) and mask[ord("a")]
    assert state.advance(ord("a")) is Progress.CONTINUE
    assert state.failure is None
