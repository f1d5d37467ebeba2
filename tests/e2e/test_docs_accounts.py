"""docs/accounts.md's examples, run as written against a real server with accounts on.

The page's ``pampero serve --accounts`` starts the server; ``PAMPERO_DATABASE_URL`` (which the
page names as a setting of both ``serve`` and ``pampero keys``) points it and the CLI at a new
SQLite file. The ``pampero keys`` block runs command by command, the id and prefix its example
output shows replaced by those of the key its first command created; the curl blocks run with
``PAMPERO_KEY``, ``ADMIN_KEY`` and ``KEY_ID`` set as the page says, to secrets the CLI printed.
Only the ports change otherwise (``tests/e2e/doc_commands.py``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.docs_blocks import Block, blocks, examples
from tests.e2e.doc_commands import Ports, environment, run, serving
from tests.e2e.harness import MODEL_ID, Server, SnippetRun

pytestmark = pytest.mark.e2e

PAGE = "accounts.md"
CREATED = re.compile(
    r"^key (key_\w+) \((sk-pam-\S+)\.\.\.\): save this secret now; it is not shown again:\n"
    r"(sk-pam-\S+)$",
    re.M,
)


def page_examples() -> dict[str, Block]:
    found = examples(PAGE)
    assert [b.runner for b in found] == ["pampero", "curl", "curl", "curl"]
    return dict(zip(("keys", "own", "admin-create", "admin-manage"), found, strict=True))


def shown_key() -> tuple[str, str]:
    """The id and prefix the page's example output shows for the key it creates."""
    keys = page_examples()["keys"].code
    shown = "\n".join(line.removeprefix("# ") for line in keys.splitlines())
    found = CREATED.search(shown)
    assert found is not None, keys
    return found.group(1), found.group(2)


def created(run_: SnippetRun) -> tuple[str, str, str]:
    """The id, prefix and secret ``pampero keys create`` printed."""
    found = CREATED.search(run_.ok())
    assert found is not None, run_.stdout
    return found.group(1), found.group(2), found.group(3)


def json_values(text: str) -> list[Any]:
    """The JSON values printed one after another (curl -s prints bodies with no separator)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


@dataclass
class Accounts:
    server: Server
    ports: Ports
    env: dict[str, str]

    def keys(self, command: str) -> SnippetRun:
        return run(command, self.ports, self.env)

    def get(self, path: str, secret: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {secret}"}
        return httpx.get(self.server.url + path, headers=headers, timeout=30)

    def refused(self, secret: str) -> bool:
        """Whether the server refuses ``secret`` (401) within the second the page promises."""
        deadline = time.monotonic() + 3
        while self.get("/v1/key", secret).status_code != 401:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


@pytest.fixture(scope="module")
def accounts(
    pampero_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Accounts]:
    pytest.importorskip("sqlalchemy", reason="the accounts extra is not installed")
    where = tmp_path_factory.mktemp("docs-accounts")
    env = environment(pampero_env, PAMPERO_DATABASE_URL=f"sqlite:///{where / 'accounts.db'}")
    (set_up,) = (b for b in blocks(PAGE) if b.language == "bash" and b.runner is None)
    serve = [c for c in set_up.commands if c.startswith("pampero serve --accounts")]
    ports = Ports()
    with serving(serve, ports, env, where) as (server,):
        yield Accounts(server, ports, env)


@pytest.fixture(scope="module")
def keys_block(accounts: Accounts) -> list[tuple[str, SnippetRun]]:
    """The ``pampero keys`` block, each command as written but for the key it names."""
    shown_id, shown_prefix = shown_key()
    commands = page_examples()["keys"].commands
    first = accounts.keys(commands[0])
    key_id, prefix, _ = created(first)
    done = [(commands[0], first)]
    for command in commands[1:]:
        mine = command.replace(shown_id, key_id).replace(shown_prefix, prefix)
        done.append((mine, accounts.keys(mine)))
    return done


def test_every_keys_command_succeeds(keys_block) -> None:
    for command, done in keys_block:
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
    outputs = {command.split()[2]: done.stdout for command, done in keys_block}
    assert "equipo-datos" in outputs["list"] and "equipo-datos" in outputs["show"]
    assert "reconciled:" in outputs["reconcile"]


def test_the_keys_block_ends_with_its_key_revoked(accounts, keys_block) -> None:
    (_, first), *_ = keys_block
    _, _, secret = created(first)
    rotated = next(done for command, done in keys_block if " rotate " in command)
    _, _, new_secret = created(rotated)
    for old in (secret, new_secret):  # both secrets, the overlap notwithstanding
        assert accounts.refused(old)
    shown = json.loads(accounts.keys(f"pampero keys show {created(first)[0]} --json").ok())
    assert shown["data"]["status"] == "revoked", shown


@pytest.fixture(scope="module")
def admin_secret(keys_block) -> str:
    made = [done for command, done in keys_block if "--admin" in command]
    assert len(made) == 1
    return created(made[0])[2]


def test_a_key_sees_its_limits_and_usage(accounts) -> None:
    # The key of the page's example, made by its own command; one request on it.
    _, _, secret = created(accounts.keys(page_examples()["keys"].commands[0]))
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hola"}], "max_tokens": 4}
    chat = httpx.post(
        accounts.server.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {secret}"},
        json=body,
        timeout=120,
    )
    assert chat.status_code == 200, chat.text
    deadline = time.monotonic() + 30  # settled after the response
    while not accounts.get("/v1/usage", secret).json()["data"] and time.monotonic() < deadline:
        time.sleep(0.1)
    done = run(page_examples()["own"].code, accounts.ports, {**accounts.env, "PAMPERO_KEY": secret})
    key, usage = json_values(done.ok())
    assert key["data"]["label"] == "equipo-datos"
    assert (key["data"]["limit"], key["data"]["limit_reset"]) == (5.0, "monthly")
    assert key["data"]["rate_limit"] == {
        "requests": 60, "tokens": 200000, "parallel": 4, "interval": "60s",
    }  # fmt: skip
    assert usage["object"] == "list"
    (row,) = usage["data"]
    assert row["model"] == MODEL_ID and row["requests"] == 1
    assert row["prompt_tokens"] > 0 and 0 < row["completion_tokens"] <= 4


def test_the_admin_api_manages_a_key(accounts, admin_secret) -> None:
    env = {**accounts.env, "ADMIN_KEY": admin_secret}
    (made,) = json_values(run(page_examples()["admin-create"].code, accounts.ports, env).ok())
    assert made["data"]["name"] == "cliente-acme" and made["key"].startswith("sk-pam-"), made
    assert made["data"]["expires_at"] > time.time() + 89 * 86400
    key_id = made["data"]["id"]
    manage = page_examples()["admin-manage"]
    done = run(manage.code, accounts.ports, {**env, "KEY_ID": key_id})
    listed, shown, rotated, disabled, enabled, deleted = json_values(done.ok())
    assert key_id in {k["id"] for k in listed["data"]}
    assert shown["data"]["id"] == key_id
    assert rotated["key"].startswith("sk-pam-") and rotated["key"] != made["key"]
    statuses = [body["data"]["status"] for body in (disabled, enabled, deleted)]
    assert statuses == ["disabled", "active", "revoked"]
    assert accounts.refused(rotated["key"])
