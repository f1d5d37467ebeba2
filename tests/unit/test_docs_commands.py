"""The docs' set-up commands and configuration blocks are valid as written: every
``pampero serve`` command in a shell block parses with pampero's own CLI and, where the files it
names exist, gives valid settings; every ``pampero`` config file shown (YAML with ``models:`` or
``upstreams:``) validates as the settings model. The examples themselves run in the e2e tests
(``tests/docs_blocks.py``); these blocks name hosts and files of another machine, so they are
checked rather than run."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
import yaml

from pampero.cli import build_parser, load_settings
from pampero.settings import Settings
from tests.docs_blocks import ROOT, SET_UP, blocks, commands, nav_pages

SERVE_PREFIX = "pampero serve "


def serve_commands() -> list[tuple[str, str]]:
    found = []
    for page in nav_pages():
        for block in blocks(page):
            if block.language not in ("bash", "sh", ""):
                continue
            for command in commands(block.code):
                match = SET_UP.match(command)
                rest = command[match.end(1) if match and match.group(1) else 0 :]
                if rest.startswith(SERVE_PREFIX):
                    found.append((page, rest))
    return found


def config_blocks() -> list[tuple[str, str]]:
    return [
        (page, block.code)
        for page in nav_pages()
        for block in blocks(page)
        if block.language == "yaml"
        and ("\nupstreams:" in f"\n{block.code}" or "\nmodels:" in f"\n{block.code}")
    ]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("PAMPERO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PAMPERO_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(ROOT)


def test_the_pages_show_serve_commands_and_configs() -> None:
    pages = {page for page, _ in serve_commands()}
    assert {"gateway.md", "accounts.md", "deploy.md"} <= pages
    assert "gateway.md" in {page for page, _ in config_blocks()}


@pytest.mark.parametrize(("page", "command"), serve_commands())
def test_a_serve_command_parses(page: str, command: str, clean_environment: None) -> None:
    words = [w for w in shlex.split(command, comments=True)[1:] if w != "&"]
    args = build_parser().parse_args(words)  # an unknown flag exits here
    values = {k: v for k, v in vars(args).items() if k != "command"}
    config = values.get("config")
    if config is not None and not Path(config).exists():
        pytest.skip(f"{page}: {config} is a file of the machine the page describes")
    settings = load_settings(values)
    if "--port" in words:
        assert settings.port == int(words[words.index("--port") + 1])


@pytest.mark.parametrize(("page", "text"), config_blocks())
def test_a_config_block_is_valid_settings(
    page: str, text: str, clean_environment: None, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    settings = Settings(config=path)
    data = yaml.safe_load(text)
    assert len(settings.upstreams) == len(data.get("upstreams", []))
    assert len(settings.models) == len(data.get("models", settings.models))
