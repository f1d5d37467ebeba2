"""The ``pampero`` command.

    pampero serve [--model PATH|ID=PATH|default [--engine E] [--mmproj F]]... [--config FILE] ...
    pampero model-path            assemble and verify the default model, print its path
    pampero dev tiny-vlm OUT_DIR  build a tiny random vision-language model to try images with

Flags override ``PAMPERO_*`` environment variables, which override the config file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pampero import __version__
from pampero.settings import ModelConfig, Settings


class _ModelOption(argparse.Action):
    """A per-model flag (``--engine``, ``--mmproj``): it sets a field of the ``--model`` given
    just before it, so ``--model a.gguf --mmproj a-mmproj.gguf --model b`` is unambiguous."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.model_field = option_strings[0].removeprefix("--")

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


# flag -> (settings field, argparse options). Only flags actually given reach the settings,
# so environment variables and the config file still apply to the rest.
_SERVE_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--config": ("config", {"help": "YAML or TOML config file"}),
    "--host": ("host", {"help": "address to bind (default 127.0.0.1)"}),
    "--port": ("port", {"type": int, "help": "port to bind (default 8000)"}),
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
    "--backend": (
        "backends",
        {
            "action": "append",
            "metavar": "NAME|MODULE:FACTORY",
            "help": "add the models of a chat backend factory (repeatable)",
        },
    ),
    "--api-key": ("api_keys", {"action": "append", "help": "accepted bearer key (repeatable)"}),
    "--insecure-no-auth": (
        "insecure_no_auth",
        {"action": "store_true", "help": "allow a non-loopback bind without API keys"},
    ),
    "--strict-params": (
        "strict_params",
        {"action": "store_true", "help": "reject unknown request fields with a 400"},
    ),
    "--n-ctx": ("n_ctx", {"type": int, "help": "context length per sequence (default 4096)"}),
    "--max-seqs": ("max_seqs", {"type": int, "help": "sequences decoded together (default 8)"}),
    "--max-queue": ("max_queue", {"type": int, "help": "waiting requests before 429"}),
    "--threads": ("threads", {"type": int, "help": "decode threads (default: all cores)"}),
    "--threads-batch": ("threads_batch", {"type": int, "help": "prefill threads"}),
    "--n-batch": ("n_batch", {"type": int, "help": "most tokens decoded per step"}),
    "--prefill-chunk": ("prefill_chunk", {"type": int, "help": "prompt tokens per step"}),
    "--no-prefix-cache": (
        "prefix_cache",
        {"action": "store_false", "help": "do not reuse KV of matching prompt prefixes"},
    ),
    "--kv-split": (
        "kv_unified",
        {"action": "store_false", "help": "one KV buffer per sequence instead of a shared one"},
    ),
    "--constraint-deadline": (
        "constraint_deadline",
        {"type": float, "help": "seconds a structured-output constraint may take to compile"},
    ),
    "--media-allow": (
        "media_allow",
        {
            "action": "append",
            "metavar": "HOST|.DOMAIN|CIDR",
            "help": "let image URLs reach this non-public host, domain or network (repeatable)",
        },
    ),
    "--media-timeout": ("media_timeout", {"type": float, "help": "seconds per image fetch"}),
    "--media-max-bytes": ("media_max_bytes", {"type": int, "help": "largest image in bytes"}),
    "--media-max-images": (
        "media_max_images",
        {"type": int, "help": "most images in one request"},
    ),
    "--responses-store": (
        "responses_store_items",
        {"type": int, "help": "responses kept for previous_response_id (default 1000; 0: none)"},
    ),
    "--home": ("home", {"help": "where pampero keeps its files (PAMPERO_HOME)"}),
    "--log-level": ("log_level", {"choices": ["debug", "info", "warning", "error"]}),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pampero",
        description="An OpenAI-compatible server for local models. Flags override PAMPERO_*"
        " environment variables, which override the config file.",
    )
    parser.add_argument("--version", action="version", version=f"pampero {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the OpenAI-compatible server")
    for flag, (field, options) in _SERVE_FLAGS.items():
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
    logging.basicConfig(level="INFO", format="%(message)s")
    from pampero.dev import tiny_vlm

    return tiny_vlm.main(Path(args.out_dir), home)


def serve(settings: Settings) -> int:
    import uvicorn

    from pampero.api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
