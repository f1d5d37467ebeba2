"""What admission hands a request (``Ticket``) and how the request ended (``Outcome``).

Plain data, no database: the HTTP edge builds outcomes on every metered request and is
imported by every server, with accounts or without; only ``limits.py`` settles them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pampero.accounts.keys import Key
    from pampero.pricing import Price


@dataclass
class Ticket:
    """One admitted request: what it reserved, to be settled exactly once."""

    id: str
    key: Key
    model: str
    provider: str
    price: Price | None
    amount: int  # micro-USD reserved
    tokens: int  # tokens counted against tpm at admission
    epoch: int  # the rate bucket it was counted in (window.py)
    arrival: float  # time.perf_counter() when the request arrived
    request_id: str = ""
    settled: bool = False


@dataclass
class Outcome:
    """How a request ended, with the usage it reported (or its estimate)."""

    status: str  # completed | failed | disconnected
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    extra: dict[str, int] = field(default_factory=dict)
    # What the answer itself reported: usage.cost in micro-USD (a gateway's answer is billed at
    # the price of the provider that gave it) and that provider's name.
    cost: int | None = None
    provider: str | None = None
