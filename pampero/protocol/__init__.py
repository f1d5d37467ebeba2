"""Request models for pampero's OpenAI-compatible endpoints, and their parsers.

Each endpoint has one entry point that takes the raw body and returns ``Parsed[Model]`` or
raises ``InvalidRequestError`` (400) naming the offending field:

    parse_chat_request        POST /v1/chat/completions   -> ChatCompletionRequest
    parse_completion_request  POST /v1/completions        -> CompletionRequest
    parse_tokenize_request    POST /tokenize              -> TokenizeCompletionRequest
                                                             | TokenizeChatRequest
    parse_detokenize_request  POST /detokenize            -> DetokenizeRequest

Modules: ``common`` (base model, shared sampling fields), ``messages`` (messages and content
parts), ``tools``, ``structured`` (response_format, guided_*, structured_outputs), ``chat``,
``completions``, ``tokenize``, ``parsing`` (JSON decoding, error translation, unknown fields).
"""

from pampero.protocol.chat import ChatCompletionRequest, parse_chat_request
from pampero.protocol.completions import CompletionRequest, parse_completion_request
from pampero.protocol.parsing import Parsed
from pampero.protocol.tokenize import (
    DetokenizeRequest,
    TokenizeChatRequest,
    TokenizeCompletionRequest,
    TokenizeRequest,
    parse_detokenize_request,
    parse_tokenize_request,
)

__all__ = [
    "ChatCompletionRequest",
    "CompletionRequest",
    "DetokenizeRequest",
    "Parsed",
    "TokenizeChatRequest",
    "TokenizeCompletionRequest",
    "TokenizeRequest",
    "parse_chat_request",
    "parse_completion_request",
    "parse_detokenize_request",
    "parse_tokenize_request",
]
