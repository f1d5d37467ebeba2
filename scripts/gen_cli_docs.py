#!/usr/bin/env python3
"""Write docs/cli.md, the command-line reference, from pampero's argparse parser.

    .venv/bin/python scripts/gen_cli_docs.py           # rewrite docs/cli.md
    .venv/bin/python scripts/gen_cli_docs.py --check   # exit 1 when docs/cli.md is stale

``tests/unit/test_cli_docs.py`` fails when the committed file differs from ``render()``, so a
changed flag goes with a regenerated reference. Help is formatted at a fixed width, without
colour, so the output does not depend on the terminal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pampero.cli import build_parser

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
WIDTH = 100

HEADER = """\
# Command-line reference

<!-- Generated from pampero/cli.py by scripts/gen_cli_docs.py; do not edit by hand. -->

Settings come, highest priority first, from command-line flags, `PAMPERO_*` environment
variables (lists and objects as JSON, e.g. `PAMPERO_API_KEYS='["k1","k2"]'`), the config file
(`--config` or `PAMPERO_CONFIG`; YAML or TOML) and the defaults. A flag, its environment
variable and its config-file key name the same setting.
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=WIDTH, max_help_position=32)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = _formatter
    if hasattr(parser, "color"):  # Python 3.14+ colours help on a terminal
        parser.color = False
    return parser.format_help().rstrip()


def _settings_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| Flag | Config-file key | Environment variable |", "| --- | --- | --- |"]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flag = ", ".join(f"`{option}`" for option in action.option_strings)
        key, env = f"`{action.dest}`", f"`PAMPERO_{action.dest.upper()}`"
        if isinstance(action, argparse._StoreFalseAction):  # --no-prefix-cache
            key, env = f"{key}: `false`", f"{env}=`false`"
        model_field = getattr(action, "model_field", None)
        if model_field:  # --engine, --mmproj: a field of the --model before them
            key, env = f"`{action.dest}[].{model_field}`", f"in `PAMPERO_{action.dest.upper()}`"
        rows.append(f"| {flag} | {key} | {env} |")
    return rows


def render() -> str:
    parser = build_parser()
    out = [HEADER]
    commands = [("pampero", parser)]
    for name, sub in _subcommands(parser).items():
        commands.append((f"pampero {name}", sub))
        commands += [(f"pampero {name} {inner}", p) for inner, p in _subcommands(sub).items()]
    for title, command in commands:
        out += [f"## `{title}`", "", "```text", _help(command), "```", ""]
        if title == "pampero serve":
            out += [*_settings_table(command), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description="Generate docs/cli.md from pampero's CLI parser.")
    cli.add_argument("--check", action="store_true", help="fail if docs/cli.md is stale")
    args = cli.parse_args(argv)
    text = render()
    if args.check:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is stale: run scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
