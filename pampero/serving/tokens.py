"""vLLM's ``POST /tokenize`` and ``POST /detokenize``."""

from __future__ import annotations

from pampero.errors import UnsupportedParameter
from pampero.media import image_parts
from pampero.protocol import (
    DetokenizeRequest,
    Parsed,
    TokenizeChatRequest,
    TokenizeRequest,
)
from pampero.protocol.replies import Reply
from pampero.serving.chat import ChatService
from pampero.serving.context import ServingContext, ignored_header
from pampero.serving.hub import ServedModel
from pampero.serving.params import check_token_ids


class TokensService:
    def __init__(self, context: ServingContext, chat: ChatService) -> None:
        self.context = context
        self.chat = chat

    def _model(self, name: str | None) -> ServedModel:
        hub = self.context.hub
        if name is None:
            return next(iter(hub))  # vLLM's behaviour: the (first) served model
        return hub.get(name)

    def model_id(self, name: str | None) -> str:
        """The id of the model a request naming ``name`` (or none) is served by."""
        return self._model(name).id

    def tokenize(self, parsed: Parsed[TokenizeRequest]) -> Reply:
        request = parsed.request
        served = self._model(request.model)
        tokenizer = served.engine.tokenizer
        if isinstance(request, TokenizeChatRequest):
            parts = image_parts(request.messages)
            if parts and served.engine.capabilities.supports_images:
                raise UnsupportedParameter(
                    "/tokenize does not expand images into the model's image tokens; a chat "
                    "completion's usage.prompt_tokens counts them",
                    param=parts[0][0],
                )
            tokens = self.chat.prompter(served.id).chat_tokens(request)
        else:
            tokens = tokenizer.encode(request.prompt, add_special=request.add_special_tokens)
        body: dict[str, object] = {
            "count": len(tokens),
            "max_model_len": served.engine.capabilities.context_length,
            "tokens": tokens,
        }
        if request.return_token_strs:
            body["token_strs"] = [
                tokenizer.token_bytes(t).decode("utf-8", "replace") for t in tokens
            ]
        return Reply(body=body, headers=ignored_header(parsed.ignored))

    def detokenize(self, parsed: Parsed[DetokenizeRequest]) -> Reply:
        request = parsed.request
        served = self._model(request.model)
        tokenizer = served.engine.tokenizer
        check_token_ids(request.tokens, tokenizer, "tokens")
        text = tokenizer.decode(request.tokens, skip_special=False)
        return Reply(body={"prompt": text}, headers=ignored_header(parsed.ignored))
