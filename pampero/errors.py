"""The one exception tree of pampero.

Every failure a client can cause or observe is raised as one of these types, anywhere in the
code, and translated exactly once, at the HTTP edge (``pampero.api.errors``), into OpenAI's
error body ``{"error": {"message", "type", "param", "code"}}`` with the status carried here.

    PamperoError                      500 server_error (base; never raised directly)
    ├── InvalidRequestError           400 invalid_request_error   (bad field; ``param`` names it)
    │   ├── ContextLengthExceeded     400 code=context_length_exceeded
    │   └── UnsupportedParameter      400 code=unsupported_parameter
    │       └── BeyondLimits          400 code=unsupported_parameter (a well-formed constraint
    │                                     past this server's limits: counts, nesting, compile time)
    ├── AuthenticationError           401 authentication_error
    ├── QuotaExceeded                 402 insufficient_quota      (a budget is spent, as OpenRouter)
    ├── PermissionDenied              403 permission_error        (a valid key, not for this)
    ├── NotFoundError                 404 not_found_error
    │   └── ModelNotFound             404 code=model_not_found
    ├── RequestTimeout                408 invalid_request_error code=request_timeout (slow body)
    ├── PayloadTooLarge               413 invalid_request_error
    ├── OutputNotConforming           422 code=output_schema_mismatch (a non-strict schema's
    │                                     check after generation failed on every attempt)
    ├── HeadersTooLarge               431 invalid_request_error (too many or too large headers)
    ├── RateLimited                   429 rate_limit_error code=rate_limit_exceeded (a key's limit)
    ├── Overloaded                    429 rate_limit_error code=server_overloaded (the server's)
    ├── ShuttingDown                  503 service_unavailable (draining; ``retry_after``)
    ├── EngineNotReady                503 service_unavailable
    ├── AccountsUnavailable           503 service_unavailable (the accounts database is down)
    ├── EngineError                   500 server_error (the engine failed mid-flight)
    ├── UpstreamError                 502 upstream_error (an upstream provider failed)
    └── UpstreamTimeout               504 timeout_error  (an upstream provider did not answer)

Every error carries the response headers it needs (``headers()``): one constructed with
``retry_after=N`` sends ``Retry-After: N``. Services raise; they never return error values.
Code that wants a status branches on the type, never on the message text.
"""

from __future__ import annotations

from collections.abc import Iterable


class PamperoError(Exception):
    """Base of every error pampero reports to a client."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None
    retry_after: int | None = None
    """Seconds after which a retry may succeed, sent as ``Retry-After`` (None: no header)."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """The response headers this error comes with."""
        return {} if self.retry_after is None else {"retry-after": str(self.retry_after)}

    def to_body(self) -> dict[str, dict[str, str | None]]:
        """The OpenAI error body for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(PamperoError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequestError):
    default_code = "context_length_exceeded"


class UnsupportedParameter(InvalidRequestError):
    """A parameter pampero knows but cannot honour for this model or combination."""

    default_code = "unsupported_parameter"


class BeyondLimits(UnsupportedParameter):
    """A well-formed constraint this server will not compile whole: a count or nesting past
    its limits, a compile that ran out of CPU time or crashed. Without ``strict``, a schema
    that earns it is relaxed instead (``pampero.constraints.schema_relax``)."""


class OutputNotConforming(PamperoError):
    """The model's output failed a non-strict schema's check after generation on every
    attempt the request's token budget allowed (never returned as if it were valid)."""

    status_code = 422
    error_type = "invalid_request_error"
    default_code = "output_schema_mismatch"


class AuthenticationError(PamperoError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class QuotaExceeded(PamperoError):
    status_code = 402
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class PermissionDenied(PamperoError):
    status_code = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class NotFoundError(PamperoError):
    status_code = 404
    error_type = "not_found_error"


class ModelNotFound(NotFoundError):
    default_code = "model_not_found"

    @classmethod
    def among(cls, name: str, available: Iterable[str]) -> ModelNotFound:
        """The 404 for a request's ``model`` that names none of ``available``."""
        return cls(
            f"The model '{name[:200]}' does not exist. Available: {', '.join(sorted(available))}",
            param="model",
        )


class PayloadTooLarge(PamperoError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class RequestTimeout(PamperoError):
    """The request body did not arrive in time (a slow or stalled upload)."""

    status_code = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"


class RateLimited(PamperoError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class HeadersTooLarge(PamperoError):
    status_code = 431
    error_type = "invalid_request_error"
    default_code = "request_headers_too_large"


class Overloaded(PamperoError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "server_overloaded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class ShuttingDown(PamperoError):
    """The server is draining before it exits: requests already running finish, new ones go
    elsewhere (or come back after a restart)."""

    status_code = 503
    error_type = "service_unavailable"
    default_code = "server_shutting_down"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineNotReady(PamperoError):
    status_code = 503
    error_type = "service_unavailable"
    default_code = "engine_not_ready"


class AccountsUnavailable(PamperoError):
    """The accounts database cannot be reached: requests fail closed until it can."""

    status_code = 503
    error_type = "service_unavailable"
    default_code = "accounts_unavailable"

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message, retry_after=retry_after)


class EngineError(PamperoError):
    status_code = 500
    error_type = "server_error"
    default_code = "engine_error"


class UpstreamError(PamperoError):
    status_code = 502
    error_type = "upstream_error"
    default_code = "upstream_error"


class UpstreamTimeout(PamperoError):
    status_code = 504
    error_type = "timeout_error"
    default_code = "upstream_timeout"
