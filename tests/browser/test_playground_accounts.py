"""The playground against a server with accounts and a model that thinks, in a real browser.

One server for the module: accounts on a new SQLite database, its keys made with
``pampero keys create`` (the CLI a person uses); the default model priced (so every answer
costs something the page can show) and behind the chat template of
``tests/e2e/test_reasoning.py``, which opens ``<think>`` in the generation prompt as Qwen3's
does, with the ``think`` reasoning parser splitting the model's thought from its answer. No
prefix cache and one KV buffer per sequence, so an answer depends only on its request and the
page's streamed answer can be compared with the server's whole one.

What the page shows is checked against what the server says: the reasoning and the answer
against a non-streamed replay of the request the page copies as curl; the usage view against
``GET /v1/key`` and ``GET /v1/usage`` for the same key; an admin's view against every key's
usage. Screenshots of each state go where the other browser tests put theirs.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.tab import Playground, curl_body, tabs
from tests.e2e.harness import MODEL_ID, REPO, Launcher, Server
from tests.e2e.test_reasoning import TEMPLATE

PRICE = {"prompt": 1000.0, "completion": 2000.0}  # USD per million tokens: cents per answer
# Left alone, the 0.5B model ends its turn right after its thought, without </think>; with
# min_tokens (vLLM's extra, on the page) it may not end yet, so it closes the thought and
# answers, as a reasoning model does.
THINKING_PROMPT = "What is 2+2?"
THINKING = {"max_tokens": 48, "min_tokens": 20, "temperature": 0}


@dataclass
class Key:
    id: str
    prefix: str
    secret: str


@dataclass
class Accounts:
    server: Server
    database: str
    env: dict[str, str]

    def create_key(self, *flags: str) -> Key:
        command = [sys.executable, "-m", "pampero", "keys", "--database-url", self.database]
        done = subprocess.run(
            [*command, "create", "--json", *flags],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        made = json.loads(done.stdout)
        return Key(made["data"]["id"], made["data"]["prefix"], made["key"])

    def get(self, path: str, key: Key) -> Any:
        response = httpx.get(
            self.server.url + path, headers={"authorization": f"Bearer {key.secret}"}, timeout=30
        )
        assert response.status_code == 200, response.text
        return response.json()

    def chat(self, key: Key, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(
            self.server.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {key.secret}"},
            json=body,
            timeout=180,
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def settled(self, key: Key, requests: int) -> list[dict[str, Any]]:
        """``key``'s usage rows once its ledger counts ``requests`` (settled after answers)."""
        deadline = time.monotonic() + 30
        rows: list[dict[str, Any]] = self.get("/v1/usage", key)["data"]
        while sum(r["requests"] for r in rows) < requests and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = self.get("/v1/usage", key)["data"]
        assert sum(r["requests"] for r in rows) == requests, rows
        return rows


@pytest.fixture(scope="module")
def accounts(
    launch: Launcher, tmp_path_factory: pytest.TempPathFactory, pampero_env: dict[str, str]
) -> Iterator[Accounts]:
    pytest.importorskip("sqlalchemy", reason="the accounts extra is not installed")
    folder = tmp_path_factory.mktemp("playground-accounts")
    (folder / "think.jinja").write_text(TEMPLATE)
    model = {
        "id": MODEL_ID,
        "path": "default",
        "chat_template": str(folder / "think.jinja"),
        "reasoning_parser": "think",
        "price": PRICE,
    }
    (folder / "config.yaml").write_text(json.dumps({"models": [model]}))
    database = f"sqlite:///{folder / 'accounts.db'}"
    flags = ("--config", str(folder / "config.yaml"), "--database-url", database)
    with launch(*flags, "--no-prefix-cache") as server:
        yield Accounts(server, database, pampero_env)


@pytest.fixture(scope="module")
def user(accounts: Accounts) -> Key:
    return accounts.create_key(
        "--name", "playground-user", "--budget", "5", "--budget-reset", "monthly",
        "--rpm", "60", "--parallel", "2",
    )  # fmt: skip


@pytest.fixture
def playground(
    chromium: Any, accounts: Accounts, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Playground]]:
    with tabs(chromium, accounts.server.url, artifacts, request.node.name, None) as open_tab:
        yield open_tab


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def money(value: float) -> str:
    """As the page writes an amount (usage.js ``money``)."""
    return f"${value:.{6 if 0 < abs(value) < 0.01 else 2}f}"


def table(tab: Playground) -> list[list[str]]:
    rows: list[list[str]] = tab.page.eval_on_selector_all(
        "#usage-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    return rows


def by_model(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The usage table the page should draw from ``/v1/usage`` rows (one model here)."""
    fields = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens")
    totals = [f"{sum(r[f] for r in rows):,}" for f in fields]
    return [[MODEL_ID, *totals, money(sum(r["cost"] for r in rows))]]


def open_usage(tab: Playground) -> None:
    tab.page.click("#tab-usage")
    tab.page.wait_for_selector("#usage-table:not([hidden])")
    tab.page.wait_for_selector("#usage-key:not([hidden])")


def test_reasoning_is_shown_apart_from_the_answer_and_collapsed(playground, accounts) -> None:
    thinker = accounts.create_key("--name", "thinker")
    tab = playground(key=thinker.secret)
    tab.set(**THINKING)
    tab.send(THINKING_PROMPT)
    tab.wait_answer()
    page = tab.page
    details = page.locator(".message.assistant details.reasoning")
    assert details.count() == 1
    assert details.evaluate("d => d.open") is False  # collapsed until asked for
    assert page.inner_text(".message.assistant details.reasoning summary") == "Reasoning"
    shown_reasoning = page.text_content(".message.assistant .reasoning-text")
    shown_answer = page.text_content(".message.assistant .content")
    tab.shot("reasoning-collapsed")
    page.click(".message.assistant details.reasoning summary")
    assert details.evaluate("d => d.open") is True
    tab.shot("reasoning-open")
    # The same request, whole: the server's own split of the model's text.
    body = curl_body(tab.snippet("curl"))
    assert body["stream"] is True and body["min_tokens"] == THINKING["min_tokens"]
    body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    whole = accounts.chat(thinker, body)
    message = whole["choices"][0]["message"]
    assert message["reasoning_content"] and message["content"], message
    assert shown_reasoning == message["reasoning_content"]
    assert shown_answer == (message["content"] or "")
    for tag in ("<think>", "</think>"):
        assert tag not in (shown_reasoning or "") and tag not in (shown_answer or "")
    # The figures count the reasoning tokens too: they are generated, and paid for.
    assert int(tab.stat("out")) == whole["usage"]["completion_tokens"]
    assert tab.stat("finish") == whole["choices"][0]["finish_reason"]


def test_the_usage_view_shows_the_keys_own_spend_and_limits(playground, accounts, user) -> None:
    tab = playground(key=user.secret)
    tab.set(max_tokens=8, temperature=0)
    tab.send("Say hello.")
    tab.wait_answer()
    cost = float(tab.stat("cost").removeprefix("$"))
    assert cost > 0  # a priced model: the answer says what it cost
    tab.shot("answer-with-cost")
    rows = accounts.settled(user, requests=1)
    assert rows[0]["date"] == today() and rows[0]["cost"] == pytest.approx(cost, abs=1e-6)
    assert rows[0]["prompt_tokens"] == int(tab.stat("in"))
    assert rows[0]["completion_tokens"] == int(tab.stat("out"))
    open_usage(tab)
    page = tab.page
    assert table(tab) == by_model(rows)
    bars = page.eval_on_selector_all(
        "#usage-chart rect.bar-rect", "bars => bars.map(b => [b.dataset.date, +b.dataset.cost])"
    )
    assert bars == [[today(), pytest.approx(cost, abs=1e-6)]]
    key = accounts.get("/v1/key", user)["data"]
    limits = page.eval_on_selector_all(
        "#usage-key-list dd", "items => items.map(i => i.textContent)"
    )
    assert limits == [
        "playground-user",
        money(key["usage"]),
        "$5.00",
        money(key["limit_remaining"]),
        "monthly",
        "60 requests per 60s, 2 at a time",
    ]
    assert key["usage"] == pytest.approx(cost, abs=1e-6)
    assert page.is_hidden("#usage-key-filter-label")  # one key's own view
    tab.shot("usage-own-key")


def test_an_admin_sees_every_keys_usage_and_can_pick_one(playground, accounts) -> None:
    other = accounts.create_key("--name", "other-team")
    accounts.chat(other, {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}],
                          "max_tokens": 4})  # fmt: skip
    accounts.settled(other, requests=1)
    admin = accounts.create_key("--name", "operations", "--admin")
    everyone = accounts.get("/v1/usage", admin)["data"]
    assert {other.prefix} <= {row["key"] for row in everyone}
    tab = playground(key=admin.secret)
    open_usage(tab)
    page = tab.page
    assert page.is_visible("#usage-key-filter-label")  # rows name keys: an admin's view
    assert table(tab) == by_model(everyone)
    assert page.eval_on_selector_all("#usage-key-list dd", "i => i[0].textContent") == "operations"
    tab.shot("usage-admin-all-keys")
    page.fill("#usage-key-filter", other.prefix)
    page.click("#usage-range button[type=submit]")
    page.wait_for_function(
        "n => document.querySelector('#usage-table tbody tr td').textContent === n", arg="1"
    )
    assert table(tab) == by_model(accounts.get("/v1/usage", other)["data"])
    tab.shot("usage-admin-one-key")
