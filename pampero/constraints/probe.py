"""Timing a compiled constraint's first tokens in the compile worker, before a request uses it.

A constraint can compile quickly and still cost seconds per token: lm-format-enforcer's
automaton for a lookahead, xgrammar's masks for nested counted repeats, an llguidance lexer
that outgrows its limits a few tokens in. On the decode thread that time is taken from every
sequence in the batch. So after compiling, the worker walks the constraint for a few tokens,
the way a sequence would (mask, then advance on an allowed token): once always taking the
longest allowed token (the quickest way deep into a pattern), then at random (seeded, so the
same spec gets the same walk). A constraint whose tokens cost more CPU time than its
``MaskBudget`` allows (the median past ``typical``, or one token past ``probe_ceiling``), or
whose matcher fails on the way, is refused with ``UnsupportedParameter``, so ``auto`` moves
on to the next backend. The decode thread then holds each sequence to the same budget
(``pampero.sampling.constraint``).

Example::

    compiled = backend.load(backend.compile(spec, vocabulary), spec, vocabulary)
    probe(backend, compiled, spec, vocabulary, MaskBudget())   # raises UnsupportedParameter
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from pampero.constraints.base import ConstraintBackend, ConstraintSpec, ConstraintVocabulary
from pampero.errors import PamperoError, UnsupportedParameter
from pampero.sampling.constraint import MaskBudget

PROBE_TOKENS = 16  # tokens per walk
PROBE_WALKS = 2  # the longest-token walk, then random ones


def probe(
    backend: ConstraintBackend,
    compiled: Any,
    spec: ConstraintSpec,
    vocabulary: ConstraintVocabulary,
    budget: MaskBudget,
    *,
    tokens: int = PROBE_TOKENS,
    walks: int = PROBE_WALKS,
) -> list[float]:
    """Each probed token's CPU seconds; raises ``UnsupportedParameter`` (``param=spec.param``)
    when the constraint is over ``budget`` or its matcher fails."""
    lengths = np.zeros(vocabulary.size, dtype=np.int32)
    lengths[: len(vocabulary.pieces)] = np.fromiter(
        map(len, vocabulary.pieces), dtype=np.int32, count=len(vocabulary.pieces)
    )
    closed = np.zeros(vocabulary.size, dtype=np.bool_)
    closed[sorted(vocabulary.eos_ids | vocabulary.special_ids)] = True
    costs: list[float] = []
    for walk in range(walks):
        rng = random.Random(walk) if walk else None
        try:
            _walk(backend.matcher(compiled), lengths, closed, rng, tokens, costs, budget)
        except PamperoError as exc:
            raise UnsupportedParameter(exc.message, param=spec.param) from None
        _judge(backend.name, spec, costs, budget)
    return costs


def _walk(
    matcher: Any,
    lengths: npt.NDArray[np.int32],
    closed: npt.NDArray[np.bool_],
    rng: random.Random | None,
    tokens: int,
    costs: list[float],
    budget: MaskBudget,
) -> None:
    mask = np.zeros(lengths.shape[0], dtype=np.bool_)
    for _ in range(tokens):
        started = time.thread_time()
        matcher.fill_allowed(mask)
        mask &= ~closed
        allowed = np.flatnonzero(mask)
        if not allowed.size:  # only an end token may follow
            costs.append(time.thread_time() - started)
            return
        if rng is None:
            token = int(allowed[np.argmax(lengths[allowed])])
        else:
            token = int(allowed[rng.randrange(allowed.size)])
        if not matcher.accept(token):
            raise UnsupportedParameter(f"the matcher refused token {token}, which it allowed")
        done = matcher.is_terminated()
        costs.append(time.thread_time() - started)
        if costs[-1] > budget.probe_ceiling or done:
            return


def _judge(name: str, spec: ConstraintSpec, costs: list[float], budget: MaskBudget) -> None:
    if not costs:
        return
    worst, median = max(costs), statistics.median(costs)
    if worst > budget.probe_ceiling or median > budget.typical:
        raise UnsupportedParameter(
            f"{name}'s token masks for this constraint cost too much CPU time to serve beside "
            f"other requests (over its first {len(costs)} tokens: {median * 1000:.1f} ms at "
            f"the median, {worst * 1000:.0f} ms at most; the budget is "
            f"{budget.typical * 1000:g} ms at the median, {budget.probe_ceiling * 1000:g} ms "
            "at most)",
            param=spec.param,
        )
