"""The render budget: a wall-clock deadline and an output-size cap for one template render.

A chat template is operator-trusted code, but what it costs grows with what the client sends: a
loop over the messages, a nested loop over them, a ``replace`` with client text as the
replacement. The budget keeps one request from holding a worker for long or building a huge
string. Blowing it is the client's doing (an honest template only gets expensive on a huge
or pathological input), so it is reported as ``InvalidRequestError``.

Where it is checked:

- every output chunk of ``Template.generate`` (size and time);
- every attribute access, item access and call the sandbox intercepts, and every step of
  ``range`` (time, read once every ``_CHECK_EVERY`` operations so the clock stays off the hot path);
- before ``*`` repeats a string or list, ``**`` builds a huge integer, or ``str.replace`` builds
  its result (size, computed up front, so a blow-up is refused before memory is spent).

Limit: a loop whose body does none of the above (an empty ``{% for %}`` over client data) is not
interrupted; its cost is still bounded by the input size to the power of the loop depth. The
budget guards an honest template against hostile input; it is not a jail for a hostile template.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, SupportsIndex

from jinja2.sandbox import safe_range

from pampero.errors import InvalidRequestError

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MAX_OUTPUT_CHARS = 8 * 1024 * 1024
_CHECK_EVERY = 256
_MAX_POWER_BITS = 64 * 1024

# Renders may run concurrently (threads, tasks) over one shared environment, so the budget in
# force travels with the execution context rather than with the environment.
_ACTIVE: ContextVar[RenderBudget | None] = ContextVar("pampero_render_budget", default=None)


class RenderBudget:
    """The limits of one render; activate it around the render with ``with budget.active():``."""

    __slots__ = ("_deadline", "_ops", "_timeout", "emitted", "max_chars")

    def __init__(self, timeout: float, max_chars: int) -> None:
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self.max_chars = max_chars
        self.emitted = 0
        self._ops = 0

    @contextmanager
    def active(self) -> Iterator[RenderBudget]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def check_time(self) -> None:
        if time.monotonic() > self._deadline:
            raise InvalidRequestError(
                f"Rendering the chat template took longer than {self._timeout:g} s; "
                "the conversation is too large or too complex for this model's template.",
                param="messages",
            )

    def tick(self) -> None:
        self._ops += 1
        if self._ops % _CHECK_EVERY == 0:
            self.check_time()

    def emit(self, chars: int) -> None:
        """Account for one output chunk."""
        self.emitted += chars
        self.require_size(self.emitted)
        self.check_time()

    def require_size(self, chars: int) -> None:
        if chars > self.max_chars:
            raise InvalidRequestError(
                f"The rendered prompt would exceed {self.max_chars} characters.",
                param="messages",
            )


def tick() -> None:
    """Count one template operation against the active budget, if any."""
    budget = _ACTIVE.get()
    if budget is not None:
        budget.tick()


def require_size(chars: int) -> None:
    """Refuse to build a value of ``chars`` characters (or items) beyond the active cap."""
    budget = _ACTIVE.get()
    if budget is not None:
        budget.require_size(chars)


def guard_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``*`` and ``**`` results that would blow the budget, before they are computed."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and _is_int(times):
                require_size(len(seq) * max(times, 0))
    elif operator == "**" and _power_bits(left, right) > _MAX_POWER_BITS:
        raise InvalidRequestError(
            "The chat template computed a number too large to render.", param="messages"
        )


def guard_call(func: Any, args: tuple[Any, ...]) -> None:
    """Refuse a ``str.replace`` whose result would blow the budget."""
    owner = getattr(func, "__self__", None)
    if not (isinstance(owner, str) and getattr(func, "__name__", None) == "replace"):
        return
    if len(args) < 2 or not (isinstance(args[0], str) and isinstance(args[1], str)):
        return
    old, new = args[0], args[1]
    count = owner.count(old) if old else len(owner) + 1
    require_size(len(owner) + count * max(len(new) - len(old), 0))


def _power_bits(base: Any, exponent: Any) -> int:
    """A bound on the size of ``base ** exponent`` in bits (0 when it cannot grow)."""
    if not (_is_int(base) and _is_int(exponent)) or exponent <= 0 or abs(base) <= 1:
        return 0
    return int(exponent * abs(base).bit_length())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class MeteredRange:
    """``range`` for templates: the sandbox's size limit, plus a budget tick per step."""

    __slots__ = ("_range",)

    def __init__(self, values: range) -> None:
        self._range = values

    def __iter__(self) -> Iterator[int]:
        for value in self._range:
            tick()
            yield value

    def __reversed__(self) -> Iterator[int]:
        return iter(MeteredRange(self._range[::-1]))

    def __len__(self) -> int:
        return len(self._range)

    def __contains__(self, value: object) -> bool:
        return value in self._range

    def __getitem__(self, index: SupportsIndex | slice) -> int | MeteredRange:
        if isinstance(index, slice):
            return MeteredRange(self._range[index])
        return self._range[index]

    def __repr__(self) -> str:
        return repr(self._range)


def metered_range(*args: int) -> MeteredRange:
    return MeteredRange(safe_range(*args))
