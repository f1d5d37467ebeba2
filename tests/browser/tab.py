"""One browser tab on the playground page, and the tabs a test opens (``tabs``): what the
browser tests share. Each tab is a fresh browser context (fresh local storage), optionally
holding an API key as the page keeps it; when the test ends, every tab must have had no page
error and reached no other origin than the server's."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TIMEOUT_MS = 120_000


class Playground:
    """One browser tab on the page, with the helpers the tests share."""

    def __init__(self, page: Any, url: str, artifacts: Path, name: str) -> None:
        self.page = page
        self.url = url
        self.artifacts = artifacts
        self.name = name
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request.url))
        page.set_default_timeout(TIMEOUT_MS)

    def open(self) -> None:
        self.page.goto(self.url + "/")

    def ready(self) -> None:
        self.page.wait_for_selector("body[data-ready]")
        self.page.wait_for_function("document.querySelector('#model').options.length > 0")

    def shot(self, state: str) -> None:
        self.page.screenshot(path=str(self.artifacts / f"{self.name}-{state}.png"), full_page=True)

    def set(self, **fields: Any) -> None:
        for field, value in fields.items():
            self.page.fill(f"#{field}", str(value))

    def send(self, text: str) -> None:
        self.page.fill("#prompt", text)
        self.page.click("#send")

    def wait_answer(self) -> None:
        self.page.wait_for_selector("#stats:not([hidden])")
        self.page.wait_for_selector("#send:not([disabled])")

    def answers(self) -> list[str]:
        texts: list[str] = self.page.locator(".message.assistant .content").all_inner_texts()
        return texts

    def stat(self, name: str) -> str:
        text: str = self.page.inner_text(f"#stat-{name}")
        return text

    def snippet(self, language: str) -> str:
        self.page.click(
            {"curl": "#copy-curl", "python": "#copy-python", "js": "#copy-js"}[language]
        )
        self.page.wait_for_selector("#snippet:not([hidden])")
        text: str = self.page.inner_text("#snippet")
        return text

    def error(self) -> str:
        self.page.wait_for_selector("#error:not([hidden])")
        text: str = self.page.inner_text("#error")
        return text


@contextmanager
def tabs(
    chromium: Any, url: str, artifacts: Path, name: str, default_key: str | None
) -> Iterator[Callable[..., Playground]]:
    """``open_tab(key=..., width=..., height=...)`` for one test; the key defaults to
    ``default_key`` (``key=None``: a tab with no key, which the page will ask for)."""
    contexts: list[Any] = []
    opened: list[Playground] = []
    unset = object()

    def open_tab(*, key: Any = unset, width: int = 1280, height: int = 900) -> Playground:
        key = default_key if key is unset else key
        # Playwright's wait_for_function evaluates strings, which the pages' CSP forbids
        # (tests/unit/test_openapi.py checks the policy itself).
        context = chromium.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
        contexts.append(context)
        if key is not None:
            context.add_init_script(f"localStorage.setItem('pampero.apiKey', {json.dumps(key)})")
        tab = Playground(context.new_page(), url, artifacts, name)
        opened.append(tab)
        tab.open()
        if key is not None:
            tab.ready()
        return tab

    yield open_tab
    for context in contexts:
        context.close()
    for tab in opened:
        assert tab.errors == [], tab.errors
        elsewhere = [u for u in tab.requests if not u.startswith((url, "data:", "blob:"))]
        assert elsewhere == [], "the page reached another origin"


def curl_body(command: str) -> Any:
    """The JSON body a copied curl command sends (its ``-d`` argument, shell-unquoted)."""
    words = shlex.split(command.replace("\\\n", " "))
    return json.loads(words[words.index("-d") + 1])
