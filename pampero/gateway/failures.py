"""How one attempt at one provider fails, and what the router makes of it.

``AttemptFailed`` never reaches a client: the router records it, cools the provider down if
the failure says so, and tries the next provider. ``Relayed`` is an upstream's own client
error (400, 404, 413, 422), passed through in OpenAI's error shape without a retry: another
provider would refuse the same request the same way.
"""

from __future__ import annotations

from typing import Any

from pampero.errors import PamperoError

# Statuses after which the same request may succeed at another provider.
RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})
AUTH = frozenset({401, 403})
# An upstream's error bodies and messages are clipped: they are shown to our client.
_MESSAGE_LIMIT = 500


class AttemptFailed(Exception):
    """One attempt failed in a way another provider may not (see module docstring)."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        auth: bool = False,
        timeout: bool = False,
        context_length: bool = False,
        unserved: bool = False,
        error: PamperoError | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.auth = auth
        self.timeout = timeout
        self.context_length = context_length
        # The provider does not serve this endpoint (a 404 to /v1/completions, /tokenize).
        self.unserved = unserved
        self.error = error  # the error to relay if no later candidate answers


class Relayed(PamperoError):
    """An upstream's client error, relayed with its status, type, param and code."""

    def __init__(self, status: int, error: dict[str, Any], provider: str) -> None:
        message = str(error.get("message") or f"the provider '{provider}' refused the request")
        super().__init__(
            message[:_MESSAGE_LIMIT],
            param=_text(error.get("param")),
            code=_text(error.get("code")),
        )
        self.status_code = status
        self.error_type = _text(error.get("type")) or "invalid_request_error"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:200]


def upstream_error(body: Any) -> dict[str, Any]:
    """The ``error`` object of an upstream's error body, whatever shape it came in."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return error
        if isinstance(error, str):
            return {"message": error}
        detail = body.get("detail")  # FastAPI servers
        if detail is not None:
            return {"message": str(detail)}
    return {}


def is_context_length(status: int, error: dict[str, Any]) -> bool:
    if status not in (400, 413):
        return False
    code = str(error.get("code") or "")
    message = str(error.get("message") or "").lower()
    return code == "context_length_exceeded" or (
        "context length" in message or "context window" in message or "too many tokens" in message
    )


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (HTTP dates are rare from APIs: ignored)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
