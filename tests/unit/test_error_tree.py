"""The one error tree: each type carries its status, body and headers itself."""

from __future__ import annotations

import orjson
import pytest

from pampero import errors
from pampero.api.errors import error_response

ALL = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.PamperoError)
]


def test_the_module_docstring_lists_every_type() -> None:
    assert errors.__doc__ is not None
    for cls in ALL:
        assert cls.__name__ in errors.__doc__, cls


@pytest.mark.parametrize(
    ("cls", "status", "error_type", "code"),
    [
        (errors.QuotaExceeded, 402, "insufficient_quota", "insufficient_quota"),
        (errors.PermissionDenied, 403, "permission_error", "permission_denied"),
        (errors.RateLimited, 429, "rate_limit_error", "rate_limit_exceeded"),
        (errors.Overloaded, 429, "rate_limit_error", "server_overloaded"),
        (errors.UpstreamError, 502, "upstream_error", "upstream_error"),
        (errors.UpstreamTimeout, 504, "timeout_error", "upstream_timeout"),
    ],
)
def test_gateway_and_account_errors_answer_in_openai_shape(
    cls: type[errors.PamperoError], status: int, error_type: str, code: str
) -> None:
    error = cls("no", retry_after=7)
    response = error_response(error)
    assert response.status_code == status
    assert response.headers["retry-after"] == "7"
    assert orjson.loads(bytes(response.body)) == {
        "error": {"message": "no", "type": error_type, "param": None, "code": code}
    }


def test_an_error_without_retry_after_sends_no_such_header() -> None:
    response = error_response(errors.UpstreamError("down"))
    assert "retry-after" not in response.headers
    assert errors.Overloaded("busy").headers() == {"retry-after": "1"}
