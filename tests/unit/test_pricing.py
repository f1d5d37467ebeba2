"""Prices and costs: integer micro-USD that add up exactly, and ``usage.cost`` on a priced model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from pampero.api.app import create_app
from pampero.pricing import Price, micro_usd, usd
from pampero.settings import ModelConfig, Settings
from tests.e2e import sse


def test_per_million_token_prices_are_micro_usd_per_token() -> None:
    price = Price(prompt=0.15, completion=0.6)
    assert micro_usd(price, prompt_tokens=1000, completion_tokens=200) == 270
    assert usd(270) == 0.00027


def test_request_and_image_prices_count_once_per_request_and_per_image() -> None:
    price = Price(request=0.001, image=0.002)
    assert micro_usd(price, images=3) == 1000 + 3 * 2000


def test_fractions_round_up_and_float_noise_does_not() -> None:
    assert micro_usd(Price(prompt=0.1), prompt_tokens=3) == 1  # 0.3 micro-USD is charged as 1
    assert micro_usd(Price(prompt=0.1), prompt_tokens=30) == 3  # not 4 from 3.0000000000000004


def test_a_negative_price_or_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError):
        Price(prompt=-1)
    with pytest.raises(ValidationError):
        Price.model_validate({"input": 1})


PRICE = Price(prompt=2.0, completion=8.0, request=0.0001)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        models=[
            ModelConfig(id="priced", engine="tests.fake_engine:create", price=PRICE),
            ModelConfig(id="free", engine="tests.fake_engine:create"),
        ],
        home=tmp_path_factory.mktemp("home"),
        n_ctx=256,
        max_seqs=4,
        n_batch=64,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def body(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def expected_cost(usage: dict[str, int]) -> float:
    micro = micro_usd(
        PRICE,
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
    )
    return usd(micro)


def test_a_priced_model_reports_its_cost_in_usage(client: TestClient) -> None:
    usage = client.post("/v1/chat/completions", json=body("priced")).json()["usage"]
    assert usage["completion_tokens"] > 0
    assert usage["cost"] == expected_cost(usage)
    assert usage["cost"] >= PRICE.request


def test_a_streamed_priced_answer_reports_its_cost_in_the_usage_chunk(client: TestClient) -> None:
    request = body("priced") | {"stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=request) as response:
        events = sse.parse_events(b"".join(response.iter_raw()))
    usage = events[-1]["usage"]
    assert usage["cost"] == expected_cost(usage)


def test_completions_on_a_priced_model_report_cost(client: TestClient) -> None:
    request = {"model": "priced", "prompt": ["a", "b"], "max_tokens": 3}
    usage = client.post("/v1/completions", json=request).json()["usage"]
    assert usage["cost"] == expected_cost(usage)


def test_an_unpriced_model_has_no_cost_field(client: TestClient) -> None:
    usage = client.post("/v1/chat/completions", json=body("free")).json()["usage"]
    assert "cost" not in usage
