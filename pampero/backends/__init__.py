"""Chat backends: the message-level seam between the HTTP edge and whatever answers.

``base`` holds the interface (``ChatBackend``, ``ModelCard``, ``RequestContext``), ``local``
the backend over this process's engines, ``catalogue`` the map from model ids to backends and
the registry of backend factories.
"""

from pampero.backends.base import (
    BackendBase,
    BackendEnvironment,
    ChatBackend,
    ModelCard,
    Price,
    RequestContext,
    chat_body,
    chat_chunk,
    unsupported_fields,
)

__all__ = [
    "BackendBase",
    "BackendEnvironment",
    "ChatBackend",
    "ModelCard",
    "Price",
    "RequestContext",
    "chat_body",
    "chat_chunk",
    "unsupported_fields",
]
