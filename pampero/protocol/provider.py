"""The gateway's routing fields of a chat request: OpenRouter's ``provider`` object and the
``models`` fallback array, plus the body fields a client may never set.

``provider`` is checked strictly: an unknown key or a wrong type is a 400 naming the field
(``provider.sort``), never a preference silently ignored. Example::

    {"model": "openai/gpt-4o", "models": ["qwen-coder"],
     "provider": {"order": ["vllm-a", "local"], "allow_fallbacks": false,
                  "max_price": {"prompt": 1, "completion": 2}}}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# The client never picks the upstream host or credentials (LiteLLM takes these from a body).
FORBIDDEN_FIELDS = ("api_base", "base_url", "api_key", "extra_headers")
MAX_FALLBACK_MODELS = 5

NonEmptyStr = Annotated[str, Field(min_length=1)]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
ProviderNames = Annotated[list[NonEmptyStr], Field(max_length=64)]


class _Strict(BaseModel):
    # Unlike other request models, unknown keys here are errors: a routing preference that
    # is misspelt and ignored would route a request where its sender said it must not go.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class MaxPrice(_Strict):
    """USD per million prompt / completion tokens, per request and per image, at most."""

    prompt: Price | None = None
    completion: Price | None = None
    request: Price | None = None
    image: Price | None = None


class ProviderPreferences(_Strict):
    """OpenRouter's provider routing object (https://openrouter.ai/docs/features/provider-routing)."""

    order: ProviderNames | None = None
    only: ProviderNames | None = None
    ignore: ProviderNames | None = None
    allow_fallbacks: bool = True
    require_parameters: bool = False
    data_collection: Literal["allow", "deny"] = "allow"
    quantizations: Annotated[list[NonEmptyStr], Field(max_length=32)] | None = None
    sort: Literal["price", "throughput", "latency"] | None = None
    max_price: MaxPrice | None = None
    preferred_min_throughput: Annotated[float, Field(ge=0)] | None = None  # tokens/s
    preferred_max_latency: Annotated[float, Field(ge=0)] | None = None  # seconds to first token

    def names(self) -> list[tuple[str, str]]:
        """Every provider named, as (param path, name)."""
        found: list[tuple[str, str]] = []
        for key in ("order", "only", "ignore"):
            for i, name in enumerate(getattr(self, key) or ()):
                found.append((f"provider.{key}[{i}]", name))
        return found


FallbackModels = Annotated[list[NonEmptyStr], Field(max_length=MAX_FALLBACK_MODELS)]
