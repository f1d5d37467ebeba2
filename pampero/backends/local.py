"""The local backend: a model served on this machine by one of pampero's engines.

Everything between a validated request and the engine (prompt rendering, tool plans,
constraints, streaming) is ``pampero.serving``; this module presents it through the
``ChatBackend`` seam, one backend per served model.
"""

from __future__ import annotations

from collections.abc import Iterable

from pampero.backends.base import BackendEnvironment, ChatBackend, ModelCard, RequestContext
from pampero.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    Parsed,
    TokenizeRequest,
)
from pampero.protocol.common import GenerationFields
from pampero.protocol.replies import Reply
from pampero.serving.hub import ServedModel
from pampero.serving.services import Services


class LocalBackend:
    """One locally served model. Serving refuses what this model cannot honour itself, with
    a 400 naming the field, so ``unsupported`` has nothing to add."""

    def __init__(self, served: ServedModel, services: Services) -> None:
        self.served = served
        self.services = services

    @property
    def card(self) -> ModelCard:
        caps = self.served.engine.capabilities
        config = self.served.config
        return ModelCard(
            id=config.id,
            aliases=tuple(config.aliases),
            provider="local",
            created=self.served.created,
            context_length=caps.context_length,
            capabilities={
                "chat": True,
                "completions": True,
                "vision": caps.supports_images,
                "tools": caps.supports_tools,
                "logprobs": caps.supports_logprobs,
                "prompt_logprobs": caps.supports_prompt_logprobs,
                "beam_search": caps.supports_beam_search,
                "structured_outputs": True,
            },
            price=config.price,
            serves_completions=True,
            serves_tokens=True,
        )

    def unsupported(self, request: GenerationFields) -> list[str]:
        return []

    async def chat(self, parsed: Parsed[ChatCompletionRequest], context: RequestContext) -> Reply:
        if context.priority is not None:  # an account's tier outranks the body's priority
            parsed.request.priority = context.priority
        return await self.services.chat.create(parsed, context.arrival)

    async def complete(self, parsed: Parsed[CompletionRequest], context: RequestContext) -> Reply:
        if context.priority is not None:
            parsed.request.priority = context.priority
        return await self.services.completions.create(parsed, context.arrival)

    async def tokenize(self, parsed: Parsed[TokenizeRequest], context: RequestContext) -> Reply:
        return self.services.tokens.tokenize(parsed)

    async def detokenize(self, parsed: Parsed[DetokenizeRequest], context: RequestContext) -> Reply:
        return self.services.tokens.detokenize(parsed)


def local_backends(environment: BackendEnvironment) -> Iterable[ChatBackend]:
    """One ``LocalBackend`` per model the hub serves."""
    services: Services = environment.services
    return [LocalBackend(served, services) for served in services.context.hub]
