"""vLLM's ``POST /tokenize`` (a prompt, or messages rendered with the chat template) and
``POST /detokenize``.

``model`` is optional on these endpoints, as in vLLM: serving picks the only loaded model
when it is omitted.
"""

from __future__ import annotations

from pampero.errors import InvalidRequestError
from pampero.protocol.common import ProtocolModel, TokenId
from pampero.protocol.messages import ChatTemplateFields
from pampero.protocol.parsing import Parsed, load_json_object, parse_model, validate_object
from pampero.protocol.tools import Tools


class TokenizeCompletionRequest(ProtocolModel):
    model: str | None = None
    prompt: str
    add_special_tokens: bool = True
    return_token_strs: bool = False


class TokenizeChatRequest(ChatTemplateFields):
    model: str | None = None
    # The chat template renders tool definitions into the prompt, so they count as tokens.
    tools: Tools | None = None
    add_special_tokens: bool = False
    return_token_strs: bool = False


TokenizeRequest = TokenizeCompletionRequest | TokenizeChatRequest


class DetokenizeRequest(ProtocolModel):
    model: str | None = None
    tokens: list[TokenId]


def parse_tokenize_request(body: bytes, *, strict: bool) -> Parsed[TokenizeRequest]:
    """Parse a ``/tokenize`` body: the prompt form if it has ``prompt``, the messages form if
    it has ``messages``; both at once or neither is a 400."""
    data = load_json_object(body)
    has_prompt, has_messages = "prompt" in data, "messages" in data
    if has_prompt and has_messages:
        raise InvalidRequestError(
            "Invalid request: send either 'prompt' or 'messages', not both.", param="messages"
        )
    if not (has_prompt or has_messages):
        raise InvalidRequestError(
            "Missing required parameter: 'prompt' (or 'messages' to tokenize a conversation).",
            param="prompt",
        )
    model: type[TokenizeRequest] = (
        TokenizeChatRequest if has_messages else TokenizeCompletionRequest
    )
    return validate_object(model, data, strict=strict)


def parse_detokenize_request(body: bytes, *, strict: bool) -> Parsed[DetokenizeRequest]:
    """Parse a ``/detokenize`` body."""
    return parse_model(DetokenizeRequest, body, strict=strict)
