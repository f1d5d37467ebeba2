"""The docs site (``mkdocs.yml``, ``docs/``): it builds with no warning, its generated pages are
current, every page is in the navigation, and every code example has a test that runs it
(``tests/docs_blocks.py`` says which blocks are examples)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.docs_blocks import (
    DOCS,
    EXAMPLES_RUN_BY,
    ROOT,
    RUN_HERE,
    SET_UP,
    blocks,
    examples,
    nav_pages,
)


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts/gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_with_no_warning(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is in the web-dev extra (make test installs it)")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "WARNING" not in done.stderr, done.stderr[-4000:]
    assert (tmp_path / "site" / "seeds" / "001" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "index.html").is_file()


def test_generated_pages_are_current() -> None:
    for path, text in generator().pages().items():
        committed = path.read_text(encoding="utf-8") if path.exists() else ""
        assert committed == text, f"{path.relative_to(ROOT)}: run scripts/gen_docs.py"


def test_every_page_is_in_the_navigation() -> None:
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages == set(nav_pages())


def test_every_example_has_a_test_that_runs_it() -> None:
    for page in nav_pages():
        if examples(page):
            assert page in EXAMPLES_RUN_BY, f"{page} has code examples that no test runs"
        for block in blocks(page):
            if block.language in ("bash", "sh") and block.runner is None:
                first = block.commands[0]
                assert SET_UP.match(first), f"{page}: a bash block that is neither curl nor set-up"
    for page, runner in EXAMPLES_RUN_BY.items():
        tests = runner.split(", ")
        for test in tests:
            assert (ROOT / test).exists(), test
        if runner != RUN_HERE and all(test.endswith(".py") for test in tests):
            for test in tests:  # a page's own tests name it
                assert page in (ROOT / test).read_text(encoding="utf-8"), (page, test)


def test_seed_pages_show_the_snippets_the_seed_tests_run() -> None:
    gen = generator()
    for seed in gen.SEEDS:
        shown = [block.code for block in examples(f"seeds/{seed.number}.md")]
        tested = [gen.localised(code).rstrip("\n") + "\n" for _, code in seed.snippets.values()]
        assert shown == tested
        assert len(shown) >= 1
