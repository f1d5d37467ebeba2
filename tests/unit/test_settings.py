"""Settings from flags, ``PAMPERO_*`` variables, a YAML or TOML file and defaults; the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pampero.cli import build_parser, load_settings, main
from pampero.settings import DEFAULT_MODEL_ID, DEFAULT_MODEL_PATH, ModelConfig, Settings

YAML = """\
port: 7000
host: 127.0.0.1
api_keys: ["file-key"]
max_seqs: 4
models:
  - id: file-model
    path: /models/a.gguf
    aliases: [alias-a]
    n_ctx: 2048
"""

TOML = """\
port = 7000
api_keys = ["file-key"]
max_seqs = 4

[[models]]
id = "file-model"
path = "/models/a.gguf"
aliases = ["alias-a"]
n_ctx = 2048
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PAMPERO_"):
            monkeypatch.delenv(name)


def serve(*argv: str) -> Settings:
    """Settings as ``pampero serve ARGV`` builds them."""
    args = vars(build_parser().parse_args(["serve", *argv]))
    return load_settings({k: v for k, v in args.items() if k != "command"})


@pytest.fixture(params=["yaml", "toml"])
def config_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"pampero.{request.param}"
    path.write_text(YAML if request.param == "yaml" else TOML)
    return path


def test_defaults() -> None:
    s = serve()
    assert (s.host, s.port, s.api_keys, s.max_seqs, s.n_batch) == ("127.0.0.1", 8000, [], 8, 512)
    assert [(m.id, m.path) for m in s.models] == [(DEFAULT_MODEL_ID, DEFAULT_MODEL_PATH)]
    assert s.prefix_cache and not s.kv_unified and not s.insecure_no_auth


def test_the_config_file_is_read_in_either_format(config_file: Path) -> None:
    s = serve("--config", str(config_file))
    assert (s.port, s.api_keys, s.max_seqs) == (7000, ["file-key"], 4)
    (model,) = s.models
    assert (model.id, model.path, model.aliases, model.n_ctx) == (
        "file-model",
        "/models/a.gguf",
        ["alias-a"],
        2048,
    )


def test_env_beats_the_file_and_flags_beat_env(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAMPERO_CONFIG", str(config_file))
    assert serve().port == 7000
    monkeypatch.setenv("PAMPERO_PORT", "7100")
    monkeypatch.setenv("PAMPERO_API_KEYS", '["env-1", "env-2"]')
    s = serve()
    assert (s.port, s.api_keys, s.max_seqs) == (7100, ["env-1", "env-2"], 4)
    s = serve("--port", "7200", "--api-key", "flag-key")
    assert (s.port, s.api_keys, s.max_seqs) == (7200, ["flag-key"], 4)


def test_boolean_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("prefix_cache: true\nkv_unified: false\n")
    s = serve("--config", str(path), "--no-prefix-cache", "--kv-unified")
    assert not s.prefix_cache and s.kv_unified


def test_an_unknown_key_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("prot: 9000\n")
    with pytest.raises(ValidationError, match="prot"):
        serve("--config", str(path))


@pytest.mark.parametrize(
    ("flag", "model_id", "path"),
    [
        ("/models/llama-3.2-1b.gguf", "llama-3.2-1b", "/models/llama-3.2-1b.gguf"),
        ("my-model=/models/x.gguf", "my-model", "/models/x.gguf"),
        ("default", DEFAULT_MODEL_ID, DEFAULT_MODEL_PATH),
        (DEFAULT_MODEL_ID, DEFAULT_MODEL_ID, DEFAULT_MODEL_PATH),
    ],
)
def test_model_flag_forms(flag: str, model_id: str, path: str) -> None:
    (model,) = serve("--model", flag).models
    assert (model.id, model.path) == (model_id, path)


def test_an_existing_path_with_an_equals_sign_is_a_path(tmp_path: Path) -> None:
    odd = tmp_path / "q=4.gguf"
    odd.write_bytes(b"")
    assert ModelConfig.from_flag(str(odd)) == ModelConfig(id="q=4", path=str(odd))


def test_several_models() -> None:
    models = serve("--model", "a=/a.gguf", "--model", "default").models
    assert [m.id for m in models] == ["a", DEFAULT_MODEL_ID]


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValidationError, match="'a' is used twice"):
        serve("--model", "a=/a.gguf", "--model", "a=/b.gguf")


def test_an_alias_that_repeats_an_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  - {id: a, path: /a.gguf}\n  - {id: b, aliases: [a]}\n")
    with pytest.raises(ValidationError, match="used twice"):
        serve("--config", str(path))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_binds_need_no_key(host: str) -> None:
    assert serve("--host", host).host == host


@pytest.mark.parametrize(
    ("extra", "ok"),
    [([], False), (["--api-key", "k"], True), (["--insecure-no-auth"], True)],
)
def test_a_public_bind_needs_keys_or_an_explicit_opt_out(extra: list[str], ok: bool) -> None:
    if ok:
        assert serve("--host", "0.0.0.0", *extra).host == "0.0.0.0"
    else:
        with pytest.raises(ValidationError, match=r"refusing to bind 0\.0\.0\.0"):
            serve("--host", "0.0.0.0", *extra)


def test_n_batch_must_hold_every_running_sequence() -> None:
    with pytest.raises(ValidationError, match="n_batch"):
        serve("--n-batch", "16", "--max-seqs", "32")
    assert serve("--n-batch", "32", "--max-seqs", "32").n_batch == 32


def test_home_comes_from_pampero_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PAMPERO_HOME", str(tmp_path))
    assert serve().home == tmp_path
    assert serve("--home", str(tmp_path / "x")).home == tmp_path / "x"


def test_main_reports_invalid_settings_with_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "refusing to bind" in capsys.readouterr().err


def test_serve_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--model", "--api-key", "--max-seqs", "--prefill-chunk", "--no-prefix-cache"):
        assert flag in out


def test_the_module_entry_point_answers_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pampero", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("PAMPERO_")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: pampero serve")


def test_flags_not_given_leave_other_sources_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAMPERO_MAX_SEQS", "3")
    args: dict[str, Any] = vars(build_parser().parse_args(["serve", "--port", "1"]))
    assert "max_seqs" not in args  # argparse.SUPPRESS: absent flags don't shadow env or file
    assert serve("--port", "1").max_seqs == 3


def test_engine_knobs_can_be_set_per_model() -> None:
    from pampero.serving.hub import engine_options

    settings = Settings(
        max_seqs=8,
        threads=2,
        models=[
            ModelConfig(id="big", max_seqs=2, n_batch=64, threads_batch=1, prefix_cache=False),
            ModelConfig(id="small", path="/m/small.gguf", n_ctx=1024),
        ],
    )
    big, small = (engine_options(m, settings) for m in settings.models)
    assert (big.max_seqs, big.n_batch, big.threads, big.threads_batch) == (2, 64, 2, 1)
    assert (big.prefix_cache, small.prefix_cache) == (False, True)
    assert (small.max_seqs, small.n_ctx, small.threads_batch, small.path) == (
        8,
        1024,
        2,
        "/m/small.gguf",
    )


def test_a_model_whose_batch_cannot_hold_its_sequences_is_refused() -> None:
    with pytest.raises(ValueError, match="model big: n_batch \\(16\\) must be at least max_seqs"):
        Settings(models=[ModelConfig(id="big", max_seqs=32, n_batch=16), ModelConfig(id="b")])


def test_every_setting_has_a_flag_and_an_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pampero.cli import serve_flags

    flags = serve_flags()
    by_field = {field: flag for flag, (field, _) in flags.items()}
    assert set(Settings.model_fields) == set(by_field)  # models: --model
    for name, field in Settings.model_fields.items():
        flag = by_field[name]
        options = flags[flag][1]
        if options.get("type") in (int, float):
            value = _other_valid_value(name, field.default, options["type"])
            values = vars(build_parser().parse_args(["serve", flag, str(value)]))
            assert getattr(load_settings(_without_command(values)), name) == value, flag
            monkeypatch.setenv(f"PAMPERO_{name.upper()}", str(value))
            assert getattr(Settings(), name) == value, f"PAMPERO_{name.upper()}"
            monkeypatch.delenv(f"PAMPERO_{name.upper()}")
        elif options.get("action") in ("store_true", "store_false"):
            values = vars(build_parser().parse_args(["serve", flag]))
            assert getattr(load_settings(_without_command(values)), name) is not field.default


def _other_valid_value(name: str, default: Any, kind: type) -> Any:
    """A value other than the default that the setting accepts."""
    base = default if isinstance(default, int | float) else 2
    for candidate in (base + 1, base - 1, base * 2, 16):
        try:
            Settings(**{name: kind(candidate)})
        except ValidationError:
            continue
        if kind(candidate) != default:
            return kind(candidate)
    raise AssertionError(f"no other valid value found for {name}")


def _without_command(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != "command"}


def test_a_draft_model_follows_its_model_and_the_draft_method_needs_one() -> None:
    settings = serve("--model", "a=/a.gguf", "--draft-model", "/small.gguf", "--model", "default")
    assert [m.draft_model for m in settings.models] == ["/small.gguf", None]
    with pytest.raises(ValidationError, match="needs a draft model"):
        serve("--speculative-method", "draft")
    with pytest.raises(ValidationError, match="needs a draft model"):  # b has none
        serve(
            "--model", "a=/a.gguf", "--draft-model", "/s.gguf", "--model", "b=/b.gguf",
            "--speculative-method", "draft",
        )  # fmt: skip
    ok = serve("--model", "a=/a.gguf", "--draft-model", "/s.gguf", "--speculative-method", "draft")
    assert ok.speculative_method == "draft"
    with pytest.raises(ValidationError, match="llamacpp engine"):
        serve("--model", "a=/hf", "--engine", "transformers", "--draft-model", "/s.gguf")


def test_a_draft_model_turns_drafting_on_for_its_model_unless_a_method_is_chosen() -> None:
    settings = serve("--model", "a=/a.gguf", "--draft-model", "/s.gguf", "--model", "b=/b.gguf")
    a, b = settings.models
    assert settings.for_model(a, "speculative_method") == "draft"
    assert settings.for_model(b, "speculative_method") == "none"
    chosen = serve(
        "--model", "a=/a.gguf", "--draft-model", "/s.gguf", "--speculative-method", "none"
    )
    assert chosen.for_model(chosen.models[0], "speculative_method") == "none"
    ngram = serve(
        "--model", "a=/a.gguf", "--draft-model", "/s.gguf", "--speculative-method", "ngram"
    )
    assert ngram.for_model(ngram.models[0], "speculative_method") == "ngram"
    fixed = serve("--model", "a=/a.gguf", "--draft-model", "/s.gguf", "--deterministic")
    assert fixed.for_model(fixed.models[0], "speculative_method") == "none"
