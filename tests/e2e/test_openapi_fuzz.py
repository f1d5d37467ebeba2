"""Schemathesis against a real server, from the server's own ``/openapi.json``: bodies and path
parameters generated from the documented schemas (valid and invalid), each answer checked to
be no 5xx, and every 4xx OpenAI's error body.

Bounded: the /v1 paths and the tokenizer (the aliases share their handlers), ``MAX_EXAMPLES``
examples per operation, and generation kept short (a generated ``max_tokens`` or ``n`` above a
few is lowered, and one is set when absent, so that valid requests stay cheap; an invalid
value is left for the server to refuse).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pampero.api.openapi import openapi_document
from tests.e2e.harness import Launcher, Server

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is in the web-dev extra (make test installs it)"
)
hypothesis = pytest.importorskip("hypothesis")

pytestmark = pytest.mark.e2e

KEY = "sk-fuzz"
MAX_EXAMPLES = 10
FUZZED = r"^/(v1/|tokenize$|detokenize$|health$|version$)"
BUDGETS = {"max_tokens": 4, "max_completion_tokens": 4, "max_output_tokens": 4, "n": 2}
BUDGETS |= {"best_of": 2, "top_logprobs": 2, "logprobs": 2, "prompt_logprobs": 2}

schema = schemathesis.openapi.from_dict(openapi_document()).include(path_regex=FUZZED)


@pytest.fixture(scope="module")
def fuzzed_server(launch: Launcher) -> Iterator[Server]:
    with launch("--api-key", KEY, "--n-ctx", "512") as running:
        yield running


def bounded(body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    body = dict(body)
    for field, cap in BUDGETS.items():
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            body[field] = cap
    if "messages" in body or "prompt" in body or "input" in body:
        body.setdefault("max_tokens" if "input" not in body else "max_output_tokens", 4)
    return body


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_no_5xx_and_every_4xx_is_openais_error(case: Any, fuzzed_server: Server) -> None:
    if case.body is not None and not isinstance(case.body, type(schemathesis.core.NOT_SET)):
        case.body = bounded(case.body)
    response = case.call(
        base_url=fuzzed_server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
    )
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
