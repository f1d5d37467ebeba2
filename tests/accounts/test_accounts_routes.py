"""Every metered route in process (SQLite, the fake engine): chat, completions and the
Responses API, whole and streamed, each settled into the ledger with its real usage, and a
request that fails settled at no cost with its reservation given back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from pampero.accounts import Database
from pampero.accounts.keys import KeySpec, create_key
from pampero.api.app import create_app
from pampero.pricing import Price
from pampero.settings import ModelConfig, Settings


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accounts-routes")


@pytest.fixture(scope="module")
def secret(home: Path) -> str:
    async def make() -> str:
        database = Database.connect(f"sqlite:///{home}/accounts.db")
        await database.migrate()
        _key, made = await create_key(database, KeySpec(rpm=100, budget=10**6))
        await database.close()
        return made

    return asyncio.run(make())


@pytest.fixture(scope="module")
def client(home: Path, secret: str) -> Iterator[TestClient]:
    settings = Settings(
        models=[
            ModelConfig(
                id="fake",
                engine="tests.fake_engine:create",
                price=Price(prompt=10, completion=10),
            )
        ],
        home=home,
        n_ctx=256,
        max_seqs=4,
        n_batch=64,
        accounts=True,
    )
    with TestClient(create_app(settings)) as test_client:
        test_client.headers["authorization"] = f"Bearer {secret}"
        yield test_client


def ledger(home: Path) -> list[tuple[int, int, int, str]]:
    async def read() -> list[tuple[int, int, int, str]]:
        database = Database.connect(f"sqlite:///{home}/accounts.db")
        async with database.read() as conn:
            rows = await conn.execute(
                text(
                    "SELECT prompt_tokens, completion_tokens, cost, status "
                    "FROM pampero_usage_ledger ORDER BY id"
                )
            )
            found = [(r[0], r[1], r[2], r[3]) for r in rows]
        await database.close()
        return found

    return asyncio.run(read())


def test_every_metered_route_settles_its_real_usage(client: TestClient, home: Path) -> None:
    whole = client.post(
        "/v1/responses", json={"model": "fake", "input": "hola", "max_output_tokens": 4}
    )
    assert whole.status_code == 200 and whole.json()["usage"]["output_tokens"] == 4
    assert whole.headers["x-ratelimit-remaining-requests"] == "99"
    body = {"model": "fake", "input": "hola", "max_output_tokens": 4, "stream": True}
    with client.stream("POST", "/v1/responses", json=body) as streamed:
        assert streamed.status_code == 200
        b"".join(streamed.iter_raw())
    completion = client.post(
        "/v1/completions", json={"model": "fake", "prompt": "hola", "max_tokens": 3}
    )
    assert completion.json()["usage"]["cost"] == pytest.approx(70 / 1e6)
    too_long = client.post(
        "/v1/chat/completions",
        json={"model": "fake", "messages": [{"role": "user", "content": "x" * 5000}]},
    )
    assert too_long.status_code == 400
    deadline = time.monotonic() + 5
    while len(ledger(home)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ledger(home) == [
        (23, 4, 270, "completed"),
        (23, 4, 270, "completed"),
        (4, 3, 70, "completed"),
        (0, 0, 0, "failed"),
    ]
    own = client.get("/v1/key").json()["data"]
    assert own["usage"] == pytest.approx(610 / 1e6) and own["reserved"] == 0


def test_the_playground_and_the_api_document_need_no_key(client: TestClient) -> None:
    for path in ("/", "/playground", "/openapi.json", "/docs"):
        response = client.get(path, headers={"authorization": ""})
        assert response.status_code == 200, (path, response.status_code)
    assert client.get("/v1/models", headers={"authorization": ""}).status_code == 401


def test_an_answer_through_a_router_is_billed_to_the_provider_that_gave_it(
    client: TestClient, home: Path
) -> None:
    before = len(ledger(home))
    body = {
        "model": "fake",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 3,
        "provider": {"only": ["local"]},
    }
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["provider"] == "local"
    deadline = time.monotonic() + 5
    while len(ledger(home)) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    prompt, completion, cost, status = ledger(home)[before]
    assert (prompt, completion, status) == (
        answer["usage"]["prompt_tokens"],
        answer["usage"]["completion_tokens"],
        "completed",
    )
    assert cost == round(answer["usage"]["cost"] * 1e6)
    assert providers(home)[before] == "local"


def providers(home: Path) -> list[str]:
    async def read() -> list[str]:
        database = Database.connect(f"sqlite:///{home}/accounts.db")
        async with database.read() as conn:
            rows = await conn.execute(text("SELECT provider FROM pampero_usage_ledger ORDER BY id"))
            found = [r[0] for r in rows]
        await database.close()
        return found

    return asyncio.run(read())
