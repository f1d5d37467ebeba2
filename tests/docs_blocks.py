"""The code blocks of the docs site's pages, and which of them are examples that must run.

An example is a fenced block in ``python``, ``javascript``, or ``bash`` with a ``curl``
command, or a ``bash`` block of ``pampero keys`` commands; other ``bash`` blocks are set-up
commands (``make serve``, ``pampero serve``, a router's launch, a benchmark's procedure), and
blocks in other languages (``text``, plain, ``yaml``, ``ini``) are output, configuration or
diagrams. Each page's examples run in exactly one place, ``EXAMPLES_RUN_BY``: most in
``tests/e2e/test_docs_examples.py``; the seed pages are the seed tests' own snippets (checked
by ``tests/unit/test_docs_site.py``); the backend, gateway, accounts and deploy pages need
servers of their own (nodes behind a gateway, an accounts database, a fleet behind smg) and
run in their own tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
RUNNERS = {"python": "python", "javascript": "node", "js": "node", "bash": "curl", "sh": "curl"}
# A set-up command, after any ``NAME=value`` environment assignments.
SET_UP = re.compile(
    r"^(\w+=\S* )*(make |pampero |PYTHONPATH=|\.venv/bin/|pip |python |smg |vllm |vllm-router "
    r"|sudo systemctl |export |cat > )"
)
CLI_EXAMPLE = re.compile(r"^pampero keys ")
# deploy.md's section whose examples tests/e2e/test_fleet_prefix.py runs (the rest of the page:
# tests/e2e/test_fleet_gateway.py)
PAMPERO_FLEET = "A fleet behind pampero's own gateway (tested)"

RUN_HERE = "tests/e2e/test_docs_examples.py"
EXAMPLES_RUN_BY = {
    "index.md": RUN_HERE,
    "structured-outputs.md": RUN_HERE,
    "tools.md": RUN_HERE,
    "responses.md": RUN_HERE,
    "backends.md": "tests/e2e/test_backend_example.py",
    "gateway.md": "tests/e2e/test_docs_gateway.py",
    "accounts.md": "tests/e2e/test_docs_accounts.py",
    "deploy.md": "tests/e2e/test_fleet_gateway.py, tests/e2e/test_fleet_prefix.py",
    **{f"seeds/{n:03d}.md": "tests/e2e/test_seeds.py, tests/vision/" for n in range(5)},
}


@dataclass(frozen=True)
class Block:
    language: str
    code: str

    @property
    def runner(self) -> str | None:
        """How the block runs as an example (``run_snippets``' runner, or ``pampero`` for CLI
        commands run one by one), or None if it is not one."""
        runner = RUNNERS.get(self.language)
        if runner != "curl":
            return runner
        lines = self.commands
        if any(line.startswith("curl ") for line in lines):
            return "curl"
        if lines and all(CLI_EXAMPLE.match(line) for line in lines):
            return "pampero"
        return None

    @property
    def commands(self) -> list[str]:
        """A shell block's commands: continued lines joined, comment and blank lines left out."""
        return commands(self.code)


def commands(code: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", code)
    stripped = (line.strip() for line in joined.splitlines())
    return [line for line in stripped if line and not line.startswith("#")]


def blocks(page: str) -> list[Block]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return [Block(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def examples(page: str) -> list[Block]:
    return [block for block in blocks(page) if block.runner is not None]


def section_examples(page: str, heading: str) -> list[Block]:
    """The examples under the ``## heading`` of ``page``, up to its next ``## `` heading."""
    text = (DOCS / page).read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    found = (Block(m.group(1), m.group(2)) for m in FENCE.finditer(section))
    return [block for block in found if block.runner is not None]


def nav_pages() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    found: list[str] = []

    def walk(entries: list[object]) -> None:
        for entry in entries:
            if isinstance(entry, dict):
                for value in entry.values():
                    walk(value) if isinstance(value, list) else found.append(str(value))
            else:
                found.append(str(entry))

    walk(config["nav"])
    return found
