"""Browser fixtures: Playwright (the Python package) driving Debian's Chromium, headless.

Only ``/usr/bin/chromium`` is used (``scripts/install.sh``'s test profile installs it with
apt-get); Playwright never downloads a browser of its own here. Screenshots of each state the
tests reach go to ``test-artifacts/playground/`` at the repository root (ignored by git), or
to ``$PAMPERO_TEST_ARTIFACTS`` when set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


# Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is
# started, so every later test calling asyncio.run would fail if it lived for the session.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is in the web-dev extra (make test installs it)"
    )
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/install.sh test installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    where = Path(os.environ.get("PAMPERO_TEST_ARTIFACTS") or REPO / "test-artifacts")
    directory = where / "playground"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
