"""A server without accounts never loads the database layer (SQLAlchemy, Alembic, aiosqlite:
about 300 ms of start-up and 37 MB of memory); one with accounts does, and serves its routes.

Each case runs in a fresh interpreter, since this test process has imported everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATABASE_MODULES = ("sqlalchemy", "alembic", "aiosqlite")

PROGRAM = """
import json, sys
from starlette.testclient import TestClient
from pampero.cli import build_parser
from pampero.api.app import create_app
from pampero.settings import ModelConfig, Settings

build_parser()  # every pampero command builds the whole parser, `keys` included
settings = Settings(
    models=[ModelConfig(id="fake", engine="tests.fake_engine:create")],
    home=sys.argv[1], accounts=sys.argv[2] == "on", n_ctx=256, max_seqs=2, n_batch=64,
)
with TestClient(create_app(settings)) as client:
    chat = client.post("/v1/chat/completions", json={
        "model": "fake", "max_tokens": 4, "messages": [{"role": "user", "content": "hola"}]})
    key = client.get("/v1/key")
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split(",")))
print(json.dumps({"chat": chat.status_code, "key": key.status_code, "key_body": key.json(),
                  "loaded": loaded}))
"""


def run(tmp_path: Path, accounts: str) -> dict[str, object]:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path), accounts, ",".join(DATABASE_MODULES)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_server_without_accounts_never_imports_the_database_layer(tmp_path: Path) -> None:
    result = run(tmp_path, "off")
    assert result["chat"] == 200
    assert result["loaded"] == []
    # The key routes are still there, and say why they cannot answer.
    assert result["key"] == 404
    body = result["key_body"]
    assert isinstance(body, dict)
    assert "accounts are not enabled" in body["error"]["message"]


def test_a_server_with_accounts_loads_it_and_refuses_keyless_callers(tmp_path: Path) -> None:
    result = run(tmp_path, "on")
    assert result["loaded"] == sorted(DATABASE_MODULES)
    # A keyless caller of an accounts server is refused before any route runs.
    assert result["chat"] == 401
    assert result["key"] == 401
