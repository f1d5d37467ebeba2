"""Which providers may answer a request: the ``provider`` preferences and the request's needs.

A provider is left out, with the reason noted, when the preferences exclude it (``only``,
``ignore``, ``order`` without fallbacks, ``data_collection``, ``quantizations``, ``max_price``),
when it declares that it cannot honour a field the request sends (never dropped silently), or
when it cannot take the request's images or tools. ``require_parameters`` also leaves out
providers whose support is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pampero.backends.base import ALWAYS_SUPPORTED, ModelCard
from pampero.errors import NotFoundError, PamperoError, UnsupportedParameter
from pampero.protocol import Parsed
from pampero.protocol.common import GenerationFields
from pampero.protocol.provider import ProviderPreferences

if TYPE_CHECKING:
    from pampero.gateway.router import Provider

# Fields that are the router's business, not a provider's.
ROUTING_FIELDS = frozenset({"provider", "models"})


@dataclass
class Needs:
    """What a request asks of a provider."""

    params: list[str]
    images: bool
    tools: bool


class NoProviderMatches(NotFoundError):
    """Providers exist, but none passes the request's preferences (OpenRouter: 404)."""

    default_code = "no_endpoints"


def needs_of(parsed: Parsed[Any]) -> Needs:
    """What a chat or completions request needs (a tokenize request: nothing)."""
    request = parsed.request
    if not isinstance(request, GenerationFields):
        return Needs(params=[], images=False, tools=False)
    params = sorted(
        name
        for name in request.model_fields_set
        if name not in ALWAYS_SUPPORTED and name not in ROUTING_FIELDS
    )
    images = False
    for message in parsed.raw.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") in ("image_url", "input_image")
            for part in content
        ):
            images = True
            break
    tools = bool(getattr(request, "tools", None) or getattr(request, "functions", None))
    return Needs(params=params, images=images, tools=tools)


def eligible_providers(
    providers: list[Provider],
    preferences: ProviderPreferences,
    needs: Needs,
    skipped: dict[str, str],
) -> list[Provider]:
    """The providers that may answer, per the preferences and the request's needs; each one
    left out is noted in ``skipped`` with why."""
    chosen: list[Provider] = []
    for provider in providers:
        reason = _excluded(provider, preferences, needs)
        if reason is None:
            chosen.append(provider)
        else:
            skipped.setdefault(provider.name, reason)
    return chosen


def _excluded(provider: Provider, preferences: ProviderPreferences, needs: Needs) -> str | None:
    name = provider.name
    card = provider.card
    if preferences.only is not None and name not in preferences.only:
        return "not in provider.only"
    if preferences.ignore is not None and name in preferences.ignore:
        return "in provider.ignore"
    if (
        preferences.order is not None
        and not preferences.allow_fallbacks
        and (name not in preferences.order)
    ):
        return "not in provider.order and allow_fallbacks is false"
    if preferences.data_collection == "deny" and provider.data_collection != "deny":
        return "may collect data (provider.data_collection is deny)"
    if (
        preferences.quantizations is not None
        and provider.quantization not in preferences.quantizations
    ):
        return f"quantization {provider.quantization or 'unknown'} not in provider.quantizations"
    if preferences.max_price is not None and _over_price(card, preferences):
        return "over provider.max_price"
    supported = card.supported_params
    if supported is not None:
        missing = [p for p in needs.params if p not in supported]
        if missing:
            return f"cannot honour '{missing[0]}'"
    elif preferences.require_parameters and needs.params and not provider.knows_params:
        return "its supported parameters are unknown (provider.require_parameters)"
    for need, capability in ((needs.images, "vision"), (needs.tools, "tools")):
        if not need:
            continue
        has = card.capabilities.get(capability)
        if has is False or (has is None and preferences.require_parameters):
            return f"no {capability}"
    return None


def _over_price(card: ModelCard, preferences: ProviderPreferences) -> bool:
    limit = preferences.max_price
    price = card.price
    if limit is None or price is None:
        return False
    pairs = (
        (limit.prompt, price.prompt),
        (limit.completion, price.completion),
        (limit.request, price.request),
        (limit.image, price.image),
    )
    return any(cap is not None and cost > cap for cap, cost in pairs)


def no_candidates(model: str, skipped: dict[str, str]) -> PamperoError:
    """The error when no provider passes: a 400 naming what none of those the preferences
    allowed can honour (a parameter, images, tools), else a 404 listing why each was left."""
    for reason in skipped.values():
        if reason.startswith("cannot honour"):
            param = reason.split("'")[1]
            return UnsupportedParameter(
                f"'{param}' is not supported by any allowed provider of the model '{model}'",
                param=param,
            )
    for reason in skipped.values():
        if reason.startswith("no "):
            what = reason[3:]
            return UnsupportedParameter(
                f"no allowed provider of the model '{model}' supports {what}",
                param="messages" if what == "vision" else "tools",
            )
    detail = "; ".join(f"{name}: {why}" for name, why in skipped.items())
    return NoProviderMatches(
        f"No provider of the model '{model}' matches the request's provider preferences "
        f"({detail}).",
        param="provider",
    )
