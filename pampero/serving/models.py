"""``GET /v1/models`` and ``GET /v1/models/{id}``: OpenAI's model objects plus what a client
needs to plan requests (context length, capabilities)."""

from __future__ import annotations

from typing import Any

from pampero.serving.context import ServingContext
from pampero.serving.hub import ServedModel


class ModelsService:
    def __init__(self, context: ServingContext) -> None:
        self.context = context

    def list(self) -> dict[str, Any]:
        data = [self._card(name, served) for name, served in self.context.hub.names().items()]
        return {"object": "list", "data": data}

    def get(self, name: str) -> dict[str, Any]:
        return self._card(name, self.context.hub.get(name))

    @staticmethod
    def _card(name: str, served: ServedModel) -> dict[str, Any]:
        caps = served.engine.capabilities
        return {
            "id": name,
            "object": "model",
            "created": served.created,
            "owned_by": "pampero",
            "root": served.id,
            "parent": None if name == served.id else served.id,
            "max_model_len": caps.context_length,
            "context_length": caps.context_length,
            "capabilities": {
                "chat": True,
                "completions": True,
                "vision": caps.supports_images,
                "tools": caps.supports_tools,
                "logprobs": caps.supports_logprobs,
                "prompt_logprobs": caps.supports_prompt_logprobs,
                "beam_search": caps.supports_beam_search,
                "structured_outputs": True,
            },
        }
