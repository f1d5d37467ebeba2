"""Every use case, built once per app from one ``ServingContext``."""

from __future__ import annotations

from dataclasses import dataclass

from pampero.serving.chat import ChatService
from pampero.serving.completions import CompletionService
from pampero.serving.context import ServingContext
from pampero.serving.tokens import TokensService


@dataclass
class Services:
    context: ServingContext
    chat: ChatService
    completions: CompletionService
    tokens: TokensService

    @classmethod
    def build(cls, context: ServingContext) -> Services:
        chat = ChatService(context)
        return cls(
            context=context,
            chat=chat,
            completions=CompletionService(context),
            tokens=TokensService(context, chat),
        )
