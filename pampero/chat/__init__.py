"""Chat rendering: a conversation into the prompt text and tokens a model reads.

- ``messages``: JSON-body messages into the shape chat templates expect.
- ``template``: ``ChatTemplate``, the model's Jinja template, sandboxed and budgeted.
- ``prompt``: ``RenderedPrompt``, the text plus what it was rendered from.
- ``provenance``: which control-token text in a prompt the client typed.
- ``tokens``: ``tokenize_rendered``, which keeps client text from becoming control tokens.
"""

from pampero.chat.messages import MediaPartHandler, normalize_messages, reject_media
from pampero.chat.prompt import RenderedPrompt, Span
from pampero.chat.template import DEFAULT_TEMPLATE_KWARGS, ChatTemplate
from pampero.chat.tokens import tokenize_rendered

__all__ = [
    "DEFAULT_TEMPLATE_KWARGS",
    "ChatTemplate",
    "MediaPartHandler",
    "RenderedPrompt",
    "Span",
    "normalize_messages",
    "reject_media",
    "tokenize_rendered",
]
