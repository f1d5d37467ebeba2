"""The ``pampero`` command.

    pampero serve [--model PATH|ID=PATH|default [--engine E] [--mmproj F]]... [--config FILE] ...
    pampero model-path            assemble and verify the default model, print its path
    pampero dev tiny-vlm OUT_DIR  build a tiny random vision-language model to try images with

Flags override ``PAMPERO_*`` environment variables, which override the config file.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from pampero import __version__
from pampero.settings import ModelConfig, Settings


class _ModelOption(argparse.Action):
    """A per-model flag (``--engine``, ``--mmproj``): it sets a field of the ``--model`` given
    just before it, so ``--model a.gguf --mmproj a-mmproj.gguf --model b`` is unambiguous."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.model_field = option_strings[0].removeprefix("--").replace("-", "_")

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        models = getattr(namespace, self.dest, None)
        if not models:
            parser.error(f"{option_string} must follow the --model it applies to")
        last = models[-1]
        entry = dict(last) if isinstance(last, dict) else {"flag": last}
        entry[self.model_field] = values
        models[-1] = entry


# The flags of per-model fields: they set a field of the ``--model`` given before them.
_MODEL_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--model": (
        "models",
        {
            "action": "append",
            "metavar": "PATH|ID=PATH",
            "help": "a .gguf file to serve, optionally as ID=PATH; 'default' is the embedded "
            "Qwen2.5-Coder-0.5B-Instruct (repeatable)",
        },
    ),
    "--engine": (
        "models",
        {
            "action": _ModelOption,
            "metavar": "NAME",
            "help": "engine of the --model before it: llamacpp (default) or transformers "
            "(PATH is then a Hugging Face model directory)",
        },
    ),
    "--mmproj": (
        "models",
        {
            "action": _ModelOption,
            "metavar": "FILE",
            "help": "multimodal projector .gguf for the --model before it (image input)",
        },
    ),
    "--draft-model": (
        "models",
        {
            "action": _ModelOption,
            "metavar": "FILE",
            "help": "a smaller .gguf with the same vocabulary as the --model before it, whose "
            "greedy tokens that model verifies (speculative method 'draft', on by default "
            "for that model unless --speculative-method says otherwise); 'default' is the "
            "embedded Qwen2.5-Coder-0.5B-Instruct",
        },
    ),
}


def serve_flags() -> dict[str, tuple[str, dict[str, Any]]]:
    """flag -> (settings field, argparse options), one flag per setting, generated from the
    ``Settings`` model: the flag is the field's name with dashes (a list's flag, repeatable,
    may be named in the field's ``json_schema_extra["flag"]``), its help the description.
    A boolean that defaults to true gets ``--no-NAME``. ``models`` has its own flags."""
    flags = dict(_MODEL_FLAGS)
    for name, field in Settings.model_fields.items():
        if name == "models":
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        flag = str(extra.get("flag") or "--" + name.replace("_", "-"))
        options: dict[str, Any] = {"help": _help_of(field)}
        annotation = field.annotation
        args = get_args(annotation)
        if annotation is bool:
            if field.default is True:
                flag = str(extra.get("flag") or "--no-" + name.replace("_", "-"))
                options["action"] = "store_false"
                options["help"] = "turn off: " + options["help"]
            else:
                options["action"] = "store_true"
        elif get_origin(annotation) is list:
            options["action"] = "append"
            options["metavar"] = flag.removeprefix("--").replace("-", "_").upper()
            options["help"] += " (repeatable)"
        elif get_origin(annotation) is Literal:
            options["choices"] = list(args)
        else:
            kind = next((a for a in (annotation, *args) if a in (int, float)), None)
            if kind is not None:
                options["type"] = kind
        flags[flag] = (name, options)
    return flags


def _help_of(field: FieldInfo) -> str:
    text = (field.description or "").rstrip(".")
    if not text[1:2].isupper():  # keep "YAML", "KV"
        text = text[:1].lower() + text[1:]
    if field.default_factory is None and field.default not in (None, False, True, []):
        text += f" (default {field.default})"
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pampero",
        description="An OpenAI-compatible server for local models. Flags override PAMPERO_*"
        " environment variables, which override the config file.",
    )
    parser.add_argument("--version", action="version", version=f"pampero {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the OpenAI-compatible server")
    for flag, (field, options) in serve_flags().items():
        serve.add_argument(flag, dest=field, default=argparse.SUPPRESS, **options)
    path = commands.add_parser("model-path", help="assemble the default model, print its path")
    path.add_argument("--home", default=argparse.SUPPRESS)
    dev = commands.add_parser("dev", help="developer tools")
    tools = dev.add_subparsers(dest="dev_command", required=True)
    tiny = tools.add_parser(
        "tiny-vlm",
        help="build a tiny random vision-language model (Hugging Face + GGUF) to try images",
        description="Build a tiny, randomly initialised Qwen2-VL offline into OUT_DIR/hf (for "
        "--engine transformers) and OUT_DIR/gguf (model.gguf + mmproj.gguf, for llama.cpp). "
        "The last line printed holds the serve arguments.",
    )
    tiny.add_argument("out_dir", metavar="OUT_DIR", help="directory to build into")
    tiny.add_argument("--home", default=argparse.SUPPRESS, help="PAMPERO_HOME (caches)")
    from pampero.accounts.parser import add_parser as add_keys_parser

    add_keys_parser(commands)
    return parser


def load_settings(values: dict[str, Any]) -> Settings:
    if "models" in values:
        values["models"] = [_model_from_flags(v) for v in values["models"]]
    return Settings(**values)


def _model_from_flags(value: str | dict[str, str]) -> ModelConfig:
    if isinstance(value, str):
        return ModelConfig.from_flag(value)
    fields = dict(value)
    return ModelConfig.from_flag(fields.pop("flag"), **fields)


def describe_settings_error(exc: Exception) -> str:
    """What is wrong with the settings, one problem per line, never the values given: pydantic's
    own message repeats the input, and the input holds the API keys."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "\n  ".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dev":
        return dev(args)
    if args.command == "keys":
        return keys(args)
    values = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        settings = load_settings(values)
    except (ValidationError, ValueError, OSError) as exc:
        print(f"pampero: invalid settings: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "model-path":
        from pampero.assets import ensure_default_model

        print(ensure_default_model(settings.home))
        return 0
    return serve(settings)


def dev(args: argparse.Namespace) -> int:
    """``pampero dev ...``: only the home directory comes from the settings."""
    try:
        home = Settings(**({"home": args.home} if "home" in args else {})).home
    except (ValidationError, ValueError, OSError) as exc:
        print(f"pampero: invalid settings: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"pampero: tiny-vlm needs {', '.join(missing)}: pip install 'pampero[transformers]'",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level="INFO", format="%(message)s")
    from pampero.dev import tiny_vlm

    return tiny_vlm.main(Path(args.out_dir), home)


def keys(args: argparse.Namespace) -> int:
    """``pampero keys ...`` on the server's accounts database (its settings, with accounts on)."""
    values = {k: getattr(args, k) for k in ("home", "database_url", "config") if k in args}
    try:
        url = Settings(**values, accounts=True).accounts_database
    except (ValidationError, ValueError, OSError) as exc:
        print(f"pampero: invalid settings: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("sqlalchemy") is None:
        print(
            "pampero: keys need the accounts extra: pip install 'pampero[accounts]'",
            file=sys.stderr,
        )
        return 2
    from pampero.accounts.commands import run

    assert url is not None
    return run(args, url)


def serve(settings: Settings) -> int:
    from pampero.api.app import create_app
    from pampero.api.server import serve as run_server
    from pampero.engines import registry
    from pampero.errors import PamperoError

    try:  # an unknown engine, or one whose extra is not installed, stops here and not mid-start
        for model in settings.models:
            registry.check(model.engine)
    except PamperoError as exc:
        print(f"pampero: {exc.message}", file=sys.stderr)
        return 2

    return run_server(create_app(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
