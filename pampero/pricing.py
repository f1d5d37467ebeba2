"""Prices and costs: what a model charges and what a request cost, in exact integer micro-USD.

A ``Price`` is quoted the way OpenRouter quotes it: USD per million prompt / completion tokens,
plus USD per request and per input image. Per million tokens, one USD is one micro-USD per
token, so a token count times the quoted price *is* micro-USD. Costs are kept as integers
(rounded up, never down) so budgets add up exactly; ``usd`` turns them into the float that
``usage.cost`` shows.

Example::

    price = Price(prompt=0.15, completion=0.6)
    micro_usd(price, prompt_tokens=1000, completion_tokens=200)   # 270 (= $0.00027)
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """USD per million prompt / completion tokens, per request and per input image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: float = Field(default=0.0, ge=0, description="USD per million prompt tokens.")
    completion: float = Field(default=0.0, ge=0, description="USD per million completion tokens.")
    request: float = Field(default=0.0, ge=0, description="USD per request.")
    image: float = Field(default=0.0, ge=0, description="USD per input image.")


def micro_usd(
    price: Price, *, prompt_tokens: int = 0, completion_tokens: int = 0, images: int = 0
) -> int:
    """The cost of one request in micro-USD, rounded up to the next whole micro-USD."""
    exact = (
        prompt_tokens * price.prompt
        + completion_tokens * price.completion
        + (price.request + images * price.image) * 1_000_000
    )
    # Float noise (0.1 * 3 = 0.30000000000000004) must not round a whole amount up.
    return max(0, math.ceil(round(exact, 6)))


def usd(micro: int) -> float:
    """Micro-USD as the float USD amount OpenRouter's ``usage.cost`` shows."""
    return micro / 1_000_000
