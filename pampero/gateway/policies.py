"""Routing policies: in which order a model's eligible providers are tried by default.

A policy orders providers when the request names no ``sort`` (and before ``order`` moves the
named ones to the front). Policies live in the ``routing`` registry (``--routing NAME``, or a
model's own ``routing`` in the config file; plugins register under the entry-point group
``pampero.routing``). The gateway makes one policy object per model, so a policy's state is
per model (and per gateway process):

    class Policy(Protocol):
        def order(
            self, providers: list[Provider], session: str | None,
            request: Parsed[ChatCompletionRequest] | None = None,
        ) -> list[Provider]: ...

Built-ins: ``least-outstanding`` (default; power of two choices by requests in flight times
observed latency, drawn by weight), ``weighted`` (random by weight, ignoring load),
``session`` (the same provider for the same session header, ``session_header``, by default
``x-session-id``, while it is healthy, else least-outstanding) and ``prefix`` (prefix-cache
affinity: the provider that most likely holds the prompt's head in KV cache, unless it is
loaded well above the least loaded; ``gateway/prefix.py``). A provider of weight 0 is a
standby: it comes after every other one.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pampero.registry import Registry

if TYPE_CHECKING:
    from pampero.gateway.router import Provider
    from pampero.protocol import ChatCompletionRequest, Parsed


class Policy(Protocol):
    def order(
        self,
        providers: list[Provider],
        session: str | None,
        request: Parsed[ChatCompletionRequest] | None = None,
    ) -> list[Provider]: ...


PolicyFactory = Callable[[], Policy]

POLICIES: Registry[PolicyFactory] = Registry(
    "routing policy",
    "pampero.routing",
    {
        "least-outstanding": "pampero.gateway.policies:LeastOutstanding",
        "weighted": "pampero.gateway.policies:Weighted",
        "session": "pampero.gateway.policies:SessionAffinity",
        "prefix": "pampero.gateway.prefix:PrefixAffinity",
    },
    targets=True,
)


def split_standby(providers: list[Provider]) -> tuple[list[Provider], list[Provider]]:
    """The providers of positive weight, then the standbys (weight 0), each in given order."""
    active = [p for p in providers if p.weight > 0]
    return active, [p for p in providers if p.weight <= 0]


class LeastOutstanding:
    """Power of two choices: two providers drawn by weight, the less loaded one goes first;
    the rest follow by load."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def order(
        self,
        providers: list[Provider],
        session: str | None,
        request: Parsed[ChatCompletionRequest] | None = None,
    ) -> list[Provider]:
        active, standby = split_standby(providers)
        if len(active) <= 1:
            return active + standby
        first, second = _draw_two(active, self.rng)
        best = first if first.health.score() <= second.health.score() else second
        rest = sorted((p for p in active if p is not best), key=lambda p: p.health.score())
        return [best, *rest, *standby]


class Weighted:
    """A weighted random order, load ignored (a canary gets its share, whatever it is)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def order(
        self,
        providers: list[Provider],
        session: str | None,
        request: Parsed[ChatCompletionRequest] | None = None,
    ) -> list[Provider]:
        active, standby = split_standby(providers)
        # Efraimidis-Spirakis: sort by u^(1/w), a weighted draw without replacement.
        keyed = sorted(active, key=lambda p: -(self.rng.random() ** (1.0 / p.weight)))
        return keyed + standby


class SessionAffinity:
    """One session, one provider (rendezvous hashing: a provider leaving moves only its own
    sessions); without a session key, least-outstanding."""

    def __init__(self) -> None:
        self.fallback = LeastOutstanding()

    def order(
        self,
        providers: list[Provider],
        session: str | None,
        request: Parsed[ChatCompletionRequest] | None = None,
    ) -> list[Provider]:
        if session is None:
            return self.fallback.order(providers, session)
        active, standby = split_standby(providers)

        def rank(provider: Provider) -> bytes:
            return hashlib.blake2b(f"{session}\0{provider.name}".encode(), digest_size=8).digest()

        return sorted(active, key=rank, reverse=True) + standby


def _draw_two(providers: list[Provider], rng: random.Random) -> tuple[Provider, Provider]:
    weights = [p.weight for p in providers]
    first = rng.choices(range(len(providers)), weights)[0]
    rest = [i for i in range(len(providers)) if i != first]
    second = rng.choices(rest, [weights[i] for i in rest])[0]
    return providers[first], providers[second]
