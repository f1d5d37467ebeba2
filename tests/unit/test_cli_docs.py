"""docs/cli.md is generated from the CLI parser; the committed copy must be current."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from pampero.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts/gen_cli_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_md_is_current() -> None:
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == generator().render(), "run: .venv/bin/python scripts/gen_cli_docs.py"


def test_the_reference_covers_every_serve_flag() -> None:
    text = generator().render()
    serve = next(a for a in build_parser()._actions if a.dest == "command").choices["serve"]  # type: ignore[index]
    flags = [o for a in serve._actions for o in a.option_strings if o.startswith("--")]
    assert len(flags) > 10
    assert all(f"`{flag}`" in text for flag in flags if flag != "--help")
