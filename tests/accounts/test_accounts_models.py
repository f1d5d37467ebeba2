"""What a key's model globs and rpm cover beyond chat, in process (SQLite, two fake engines):
``/v1/models`` and ``/v1/providers`` list only the models the key may use, ``/v1/models/{id}``
hides the others, and ``/tokenize`` and ``/detokenize`` count against the key's rpm and globs
at no cost, as ``/v1/completions`` and ``/v1/responses`` count against its globs."""

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
    return tmp_path_factory.mktemp("accounts-models")


def url(home: Path) -> str:
    return f"sqlite:///{home}/accounts.db"


def new_key(home: Path, spec: KeySpec) -> tuple[str, str]:
    """A key made straight in the server's database: its id and secret."""

    async def make() -> tuple[str, str]:
        database = Database.connect(url(home))
        await database.migrate()
        key, secret = await create_key(database, spec)
        await database.close()
        return key.id, secret

    return asyncio.run(make())


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    price = Price(prompt=10, completion=10)
    settings = Settings(
        models=[
            ModelConfig(id="fake", engine="tests.fake_engine:create", price=price),
            ModelConfig(id="otro-fake", engine="tests.fake_engine:create", price=price),
        ],
        home=home,
        n_ctx=256,
        max_seqs=2,
        n_batch=64,
        accounts=True,
    )
    new_key(home, KeySpec())  # the database exists before the app opens it
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def auth(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def ledger(home: Path, key_id: str) -> list[tuple[str, int, int, str]]:
    async def read() -> list[tuple[str, int, int, str]]:
        database = Database.connect(url(home))
        async with database.read() as conn:
            rows = await conn.execute(
                text(
                    "SELECT model, prompt_tokens + completion_tokens, cost, status "
                    "FROM pampero_usage_ledger WHERE key_id = :id ORDER BY id"
                ),
                {"id": key_id},
            )
            found = [(r[0], int(r[1]), int(r[2]), r[3]) for r in rows]
        await database.close()
        return found

    return asyncio.run(read())


def test_models_lists_only_what_the_key_allows(client: TestClient, home: Path) -> None:
    _id, narrow = new_key(home, KeySpec(models=["otro-*"]))
    _id, wide = new_key(home, KeySpec())
    listed = client.get("/v1/models", headers=auth(narrow))
    assert listed.status_code == 200
    assert [m["id"] for m in listed.json()["data"]] == ["otro-fake"]
    everything = client.get("/v1/models", headers=auth(wide)).json()["data"]
    assert sorted(m["id"] for m in everything) == ["fake", "otro-fake"]

    hidden = client.get("/v1/models/fake", headers=auth(narrow))
    assert hidden.status_code == 404, hidden.text
    assert hidden.json()["error"]["code"] == "model_not_found"
    assert client.get("/v1/models/otro-fake", headers=auth(narrow)).status_code == 200
    assert client.get("/v1/models/fake", headers=auth(wide)).status_code == 200

    # /v1/providers names each provider's models as far as the key allows them.
    providers = client.get("/v1/providers", headers=auth(narrow)).json()["data"]
    assert [(p["id"], p["models"]) for p in providers] == [("local", ["otro-fake"])]
    providers = client.get("/v1/providers", headers=auth(wide)).json()["data"]
    assert [(p["id"], sorted(p["models"])) for p in providers] == [("local", ["fake", "otro-fake"])]


def test_tokenize_and_detokenize_count_against_rpm_and_globs(
    client: TestClient, home: Path
) -> None:
    key_id, secret = new_key(home, KeySpec(rpm=3, budget=10**6, models=["otro-*"]))
    headers = auth(secret)
    first = client.post("/tokenize", json={"model": "otro-fake", "prompt": "hola"}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["count"] == 4
    assert first.headers["x-ratelimit-remaining-requests"] == "2"
    back = client.post(
        "/v1/detokenize",
        json={"model": "otro-fake", "tokens": first.json()["tokens"]},
        headers=headers,
    )
    assert back.status_code == 200 and back.json()["prompt"] == "hola"
    assert back.headers["x-ratelimit-remaining-requests"] == "1"
    chat = client.post(
        "/v1/tokenize",
        json={"model": "otro-fake", "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert chat.status_code == 200 and chat.headers["x-ratelimit-remaining-requests"] == "0"
    refused = client.post("/tokenize", json={"model": "otro-fake", "prompt": "x"}, headers=headers)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1

    # Tokenizing costs nothing and counts no tokens: three ledger rows at zero.
    deadline = time.monotonic() + 5
    while len(ledger(home, key_id)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ledger(home, key_id) == [("otro-fake", 0, 0, "completed")] * 3
    own = client.get("/v1/key", headers=headers).json()["data"]
    assert own["usage"] == 0 and own["reserved"] == 0


def test_a_model_outside_the_globs_is_refused_on_every_model_route(
    client: TestClient, home: Path
) -> None:
    _id, secret = new_key(home, KeySpec(models=["otro-*"]))
    headers = auth(secret)
    attempts = [
        ("/tokenize", {"model": "fake", "prompt": "hola"}),
        ("/tokenize", {"prompt": "hola"}),  # no model: the first served one, "fake"
        ("/detokenize", {"model": "fake", "tokens": [104, 111]}),
        ("/v1/completions", {"model": "fake", "prompt": "hola", "max_tokens": 2}),
        ("/v1/responses", {"model": "fake", "input": "hola", "max_output_tokens": 2}),
        (
            "/v1/chat/completions",
            {"model": "fake", "messages": [{"role": "user", "content": "hola"}], "max_tokens": 2},
        ),
    ]
    for path, body in attempts:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "model_not_allowed", path
    allowed = client.post(
        "/v1/completions",
        json={"model": "otro-fake", "prompt": "hola", "max_tokens": 2},
        headers=headers,
    )
    assert allowed.status_code == 200, allowed.text
