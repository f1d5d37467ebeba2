"""Which models each upstream serves: its ``GET /v1/models``, with explicit config winning.

Discovery reads what OpenAI-compatible servers put in a model object: the id, vLLM's
``max_model_len`` or OpenRouter's ``context_length``, pampero's ``capabilities``. A model
declared in the config file replaces the discovered one of the same id, field by field where
the declaration sets a field. An upstream that cannot be listed at start serves its declared
models, and is listed again every ``REDISCOVER_EVERY`` seconds until it answers; its models
then join the catalogue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pampero.backends.base import ModelCard
from pampero.gateway.upstream import Upstream, UpstreamBackend
from pampero.settings import UpstreamModelConfig

log = logging.getLogger(__name__)

DISCOVERY_TIMEOUT = 10.0
REDISCOVER_EVERY = 5.0  # seconds between listings of an upstream that could not be listed


async def discover(upstream: Upstream) -> tuple[list[UpstreamBackend], bool]:
    """The backends of ``upstream``'s models (declared ones, then discovered ones), and whether
    its listing is settled (done, or not asked for)."""
    declared = {model.id: model for model in upstream.config.models}
    found: dict[str, dict[str, Any]] | None = {} if not upstream.config.discover else None
    if upstream.config.discover:
        try:
            entries = await asyncio.wait_for(
                upstream.list_models(DISCOVERY_TIMEOUT), DISCOVERY_TIMEOUT + 1
            )
            found = {entry["id"]: entry for entry in entries}
        except Exception as exc:  # an upstream that is down must not stop the gateway
            log.warning(
                "upstream %s: could not list its models (%s); serving its declared ones and "
                "listing it again every %g s",
                upstream.name,
                type(exc).__name__,
                REDISCOVER_EVERY,
            )
    listed = found or {}
    backends = [
        _backend(upstream, model, listed.get(model.upstream_id or model.id))
        for model in declared.values()
    ]
    backends += [
        _backend(upstream, None, entry) for name, entry in listed.items() if name not in declared
    ]
    return backends, found is not None


def _backend(
    upstream: Upstream, declared: UpstreamModelConfig | None, entry: dict[str, Any] | None
) -> UpstreamBackend:
    entry = entry or {}
    public = declared.id if declared is not None else str(entry["id"])
    upstream_id = (declared.upstream_id if declared else None) or (
        str(entry["id"]) if entry and declared is None else public
    )
    capabilities = {
        str(k): bool(v) for k, v in (entry.get("capabilities") or {}).items() if isinstance(v, bool)
    }
    context = entry.get("context_length") or entry.get("max_model_len")
    supported = None
    price = None
    quantization = upstream.config.quantization
    if declared is not None:
        capabilities.update(declared.capabilities)
        context = declared.context_length or context
        if declared.supported_params is not None:
            supported = frozenset(declared.supported_params)
        price = declared.price
        quantization = declared.quantization or quantization
    card = ModelCard(
        id=public,
        provider=upstream.name,
        owned_by=upstream.name,
        context_length=context if isinstance(context, int) else None,
        capabilities=capabilities,
        supported_params=supported,
        price=price,
        # Unknown unless the capabilities say: tried, and a 404 there moves on to the next.
        serves_completions=capabilities.get("completions", True),
        serves_tokens=True,
    )
    return UpstreamBackend(upstream, card, upstream_id, quantization=quantization)
