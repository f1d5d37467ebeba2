"""The gateway: every provider of every model, behind one ``RouterBackend`` per public id.

Built in the app's lifespan when upstreams are configured (or, with none, on the first request
that carries ``provider`` or ``models``, over the local models alone). Local models are the
provider ``local``; each upstream is the provider of its name. Example::

    gateway = await Gateway.start(settings, local_catalogue, metrics_registry)
    gateway.catalogue.resolve("openai/gpt-4o")   # a RouterBackend
    gateway.providers()                           # GET /v1/providers
    await gateway.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from pampero.backends.base import ChatBackend, ModelCard
from pampero.backends.catalogue import Catalogue
from pampero.errors import InvalidRequestError, ModelNotFound
from pampero.gateway.discovery import REDISCOVER_EVERY, discover
from pampero.gateway.health import BreakerPolicy, ProviderHealth
from pampero.gateway.metrics import GatewayMetrics
from pampero.gateway.policies import POLICIES, Policy
from pampero.gateway.router import Provider, RouterBackend, split_suffix
from pampero.gateway.upstream import Upstream, UpstreamBackend
from pampero.pricing import Price
from pampero.protocol import ChatCompletionRequest, Parsed
from pampero.protocol.provider import ProviderPreferences
from pampero.settings import Settings

LOCAL = "local"


class Gateway:
    def __init__(
        self,
        settings: Settings,
        upstreams: list[Upstream],
        registry: CollectorRegistry | None,
    ) -> None:
        self.settings = settings
        self.upstreams = upstreams
        self.policy: Policy = POLICIES.load(settings.routing)()
        self.breaker = BreakerPolicy(
            cooldown=settings.upstream_cooldown, ceiling=settings.upstream_max_cooldown
        )
        self.healths: dict[str, ProviderHealth] = {
            name: ProviderHealth(name, self.breaker)
            for name in (LOCAL, *(u.name for u in upstreams))
        }
        self.metrics = GatewayMetrics(registry or CollectorRegistry(), self.healths.values)
        self.routers: dict[str, RouterBackend] = {}
        # One policy per model id (its own routing, else the server's): a policy's state, like
        # the prefix policy's index, is per model.
        self.policies: dict[str, Policy] = {}
        self.catalogue: Catalogue = GatewayCatalogue([])
        self._retries: list[asyncio.Task[None]] = []

    @classmethod
    async def start(
        cls,
        settings: Settings,
        local: Iterable[ChatBackend],
        registry: CollectorRegistry | None = None,
    ) -> Gateway:
        upstreams = [Upstream(config, settings) for config in settings.upstreams]
        gateway = cls(settings, upstreams, registry)
        for backend in local:
            gateway._add(backend, aliases=backend.card.aliases)
        found = await asyncio.gather(*(discover(upstream) for upstream in upstreams))
        for upstream, (backends, settled) in zip(upstreams, found, strict=True):
            for upstream_backend in backends:
                gateway._add(upstream_backend)
            if not settled:
                gateway._retries.append(asyncio.create_task(gateway._rediscover(upstream)))
        gateway.catalogue = GatewayCatalogue(_unique(gateway.routers))
        return gateway

    async def _rediscover(self, upstream: Upstream) -> None:
        """List ``upstream`` again until it answers; then serve the models it lists."""
        while True:
            await asyncio.sleep(REDISCOVER_EVERY)
            backends, settled = await discover(upstream)
            if settled:
                break
        known = {
            p.card.id for router in self.routers.values() for p in router.providers
            if p.name == upstream.name
        }  # fmt: skip
        for backend in backends:
            if backend.card.id not in known:
                self._add(backend)
        assert isinstance(self.catalogue, GatewayCatalogue)
        self.catalogue.refresh(_unique(self.routers))

    @classmethod
    def local_only(
        cls, settings: Settings, local: Iterable[ChatBackend], registry: CollectorRegistry | None
    ) -> Gateway:
        """Routers over the local models alone: ``provider`` and ``models`` on a server
        without upstreams (built on the first request that carries them)."""
        gateway = cls(settings, [], registry)
        for backend in local:
            gateway._add(backend, aliases=backend.card.aliases)
        gateway.catalogue = GatewayCatalogue(_unique(gateway.routers))
        return gateway

    def _add(self, backend: ChatBackend, aliases: tuple[str, ...] = ()) -> None:
        card = backend.card
        router = self.routers.get(card.id)
        if router is None:
            router = RouterBackend(
                ModelCard(
                    id=card.id,
                    aliases=aliases,
                    provider="gateway",
                    owned_by=card.owned_by,
                    context_length=card.context_length,
                    capabilities=dict(card.capabilities),
                    price=card.price,
                    serves_completions=card.serves_completions,
                    serves_tokens=card.serves_tokens,
                ),
                self,
            )
            for name in (card.id, *aliases):
                self.routers.setdefault(name, router)
            self.policies[card.id] = POLICIES.load(self.settings.routing_for(card.id))()
        else:
            router.card = _merged(router.card, card)
        name = card.provider
        if isinstance(backend, UpstreamBackend):
            provider = Provider(
                name=name,
                backend=backend,
                health=self.healths[name],
                weight=backend.weight,
                quantization=backend.quantization,
                data_collection=backend.data_collection,
                first_token_timeout=backend.first_token_timeout,
            )
        else:  # a local model keeps no request data once answered
            provider = Provider(
                name=name,
                backend=backend,
                health=self.healths.setdefault(name, ProviderHealth(name, self.breaker)),
                data_collection="deny",
                knows_params=True,
            )
        router.providers.append(provider)

    async def close(self) -> None:
        for task in self._retries:
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)
        await asyncio.gather(*(u.close() for u in self.upstreams), return_exceptions=True)

    def router(self, name: str, *, param: str) -> RouterBackend:
        router = self.routers.get(split_suffix(name)[0])
        if router is None:
            error = ModelNotFound.among(name, self.routers)
            error.param = param
            raise error
        return router

    def check_names(self, preferences: ProviderPreferences) -> None:
        for param, name in preferences.names():
            if name not in self.healths:
                raise InvalidRequestError(
                    f"Invalid value for '{param}': no provider named '{name[:64]}' is "
                    f"configured. Providers: {', '.join(sorted(self.healths))}.",
                    param=param,
                )

    def order(
        self,
        eligible: list[Provider],
        preferences: ProviderPreferences,
        session: str | None,
        *,
        model: str | None = None,
        request: Parsed[ChatCompletionRequest] | None = None,
    ) -> list[Provider]:
        if preferences.sort is not None:
            ordered = sorted(eligible, key=_SORT_KEYS[preferences.sort])
        else:
            policy = self.policies.get(model, self.policy) if model else self.policy
            ordered = policy.order(eligible, session, request)
        if (
            preferences.preferred_max_latency is not None
            or preferences.preferred_min_throughput is not None
        ):
            meets = [p for p in ordered if _meets(p, preferences)]
            ordered = meets + [p for p in ordered if p not in meets]
        if preferences.order is not None:
            named = [p for n in preferences.order for p in ordered if p.name == n]
            rest = [p for p in ordered if p not in named] if preferences.allow_fallbacks else []
            return named + rest
        if not preferences.allow_fallbacks:
            return ordered[:1]
        return ordered

    def bill(self, provider: str, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.metrics.tokens.labels(provider, "prompt").inc(int(usage.get("prompt_tokens") or 0))
        self.metrics.tokens.labels(provider, "completion").inc(
            int(usage.get("completion_tokens") or 0)
        )
        cost = usage.get("cost")
        if isinstance(cost, int | float) and cost > 0:
            self.metrics.cost.labels(provider).inc(cost)

    def providers(self) -> dict[str, Any]:
        """``GET /v1/providers``: each provider's models, health and speed; no secrets."""
        served: dict[str, list[str]] = {name: [] for name in self.healths}
        for name, router in self.routers.items():
            if name != router.card.id:
                continue
            for provider in router.providers:
                served[provider.name].append(name)
        data = []
        for name, health in self.healths.items():
            kind = LOCAL if name == LOCAL else "upstream"
            if kind == LOCAL and not served[name]:
                continue
            data.append({"id": name, "kind": kind, "models": served[name], **health.view()})
        return {"object": "list", "data": data}

    def models_list(self) -> dict[str, Any]:
        """``GET /v1/models``: every model id (and alias) once, with its providers."""
        data = []
        for name, router in self.routers.items():
            entry = self.catalogue.model_object(name)
            entry["providers"] = [p.name for p in router.providers]
            data.append(entry)
        return {"object": "list", "data": data}


class GatewayCatalogue(Catalogue):
    """The routers by name; ``model:nitro`` and ``model:floor`` reach ``model``'s router."""

    def resolve(self, name: str) -> ChatBackend:
        return super().resolve(split_suffix(name)[0])

    def refresh(self, routers: list[RouterBackend]) -> None:
        """Take in routers added since (an upstream listed late), in place: the app and the
        Responses service hold this very catalogue."""
        fresh = Catalogue(routers)
        self._backends, self._names = fresh._backends, fresh._names


def _unique(routers: dict[str, RouterBackend]) -> list[RouterBackend]:
    seen: dict[int, RouterBackend] = {}
    for router in routers.values():
        seen.setdefault(id(router), router)
    return list(seen.values())


def _merged(card: ModelCard, other: ModelCard) -> ModelCard:
    """A router's card over one more provider: the largest context, capabilities any has."""
    contexts = [c for c in (card.context_length, other.context_length) if c is not None]
    capabilities = dict(card.capabilities)
    for key, value in other.capabilities.items():
        capabilities[key] = capabilities.get(key, False) or value
    return ModelCard(
        id=card.id,
        aliases=card.aliases,
        provider=card.provider,
        owned_by=card.owned_by,
        created=card.created,
        context_length=max(contexts) if contexts else None,
        capabilities=capabilities,
        price=_dearest(card.price, other.price),
        serves_completions=card.serves_completions or other.serves_completions,
        serves_tokens=card.serves_tokens or other.serves_tokens,
    )


def _dearest(a: Price | None, b: Price | None) -> Price | None:
    """Each part of the price at its highest among providers: what a router's card quotes, so an
    account reserves the worst case (the answer then bills at its own provider's price)."""
    if a is None or b is None:
        return a or b
    return Price(
        prompt=max(a.prompt, b.prompt),
        completion=max(a.completion, b.completion),
        request=max(a.request, b.request),
        image=max(a.image, b.image),
    )


def _price_key(provider: Provider) -> float:
    price = provider.card.price
    return 0.0 if price is None else price.prompt + price.completion + price.request * 1e6


def _latency_key(provider: Provider) -> float:
    latency = provider.health.latency
    return latency if latency is not None else 1e9


def _throughput_key(provider: Provider) -> float:
    throughput = provider.health.throughput
    return -throughput if throughput is not None else 0.0


_SORT_KEYS = {"price": _price_key, "latency": _latency_key, "throughput": _throughput_key}


def _meets(provider: Provider, preferences: ProviderPreferences) -> bool:
    """Whether the provider's observed speed meets the preferred bounds (unknown: it does)."""
    latency, throughput = provider.health.latency, provider.health.throughput
    max_latency = preferences.preferred_max_latency
    min_throughput = preferences.preferred_min_throughput
    too_slow = max_latency is not None and latency is not None and latency > max_latency
    too_thin = min_throughput is not None and throughput is not None and throughput < min_throughput
    return not (too_slow or too_thin)
