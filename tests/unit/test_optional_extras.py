"""Optional libraries: a backend or engine whose extra is not installed is refused with the extra
to install, ``auto`` works with whatever is installed, and start-up warms only what is asked for.

"Not installed" is simulated by registering the real built-ins with an import name that does not
exist, so these run the same in the full test venv as in a lean one.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

import pytest
from pydantic import ValidationError

from pampero import cli
from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.registry import BUILTIN, BackendEntry, BackendRegistry
from pampero.engines import registry as engines
from pampero.errors import InvalidRequestError, UnsupportedParameter
from pampero.settings import Settings

ABSENT = "pampero_tests_no_such_library"
HERE = "tests.unit.test_optional_extras"


class RefusingBackend:
    """Installed, but expresses nothing."""

    name = "refusing"

    def unsupported(self, spec: ConstraintSpec) -> str | None:
        return "it expresses nothing"

    def prepare(self, vocabulary: ConstraintVocabulary) -> None:
        return None

    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        raise AssertionError("never chosen")

    def load(self, artifact: Any, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        raise AssertionError("never chosen")

    def footprint(self, compiled: Any) -> int:
        return 0

    def matcher(self, compiled: Any) -> Any:
        raise AssertionError("never chosen")


def lean(first: BackendEntry | None = None) -> BackendRegistry:
    """The built-ins as a lean install has them: guidance (or ``first``) and nothing else."""
    entries = {
        name: entry if name == "guidance" else dataclasses.replace(entry, requires=ABSENT)
        for name, entry in BUILTIN.items()
    }
    if first is not None:
        entries["guidance"] = first
    return BackendRegistry(entries)


def spec(backend: str = "auto", value: str = '{"type": "object"}') -> ConstraintSpec:
    return ConstraintSpec(kind="json_schema", value=value, param="guided_json", backend=backend)


def test_auto_uses_the_one_backend_a_lean_install_has() -> None:
    registry = lean()
    assert registry.available() == ["guidance"]
    assert registry.candidates(spec()) == ["guidance"]


@pytest.mark.parametrize(
    ("backend", "extra"),
    [("xgrammar", "xgrammar"), ("outlines", "outlines"), ("outlines-core", "outlines"),
     ("lm-format-enforcer", "lmfe"), ("lmfe", "lmfe")],
)  # fmt: skip
def test_a_backend_that_is_not_installed_is_a_400_naming_its_extra(
    backend: str, extra: str
) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        lean().candidates(spec(backend))
    assert refused.value.status_code == 400
    assert refused.value.param == "guided_decoding_backend"
    assert f"pip install 'pampero[{extra}]'" in refused.value.message
    assert "available: auto, guidance" in refused.value.message


def test_auto_with_no_installed_backend_able_names_the_extra_with_the_others() -> None:
    registry = lean(BackendEntry(f"{HERE}:RefusingBackend"))
    with pytest.raises(UnsupportedParameter) as refused:
        registry.candidates(spec())
    message = refused.value.message
    assert "guidance: it expresses nothing" in message
    assert "not installed: xgrammar, outlines, lm-format-enforcer" in message
    assert "pip install 'pampero[structured-all]'" in message


def test_warm_up_defaults_to_autos_first_backend_only() -> None:
    everything = {name: dataclasses.replace(e, requires=None) for name, e in BUILTIN.items()}
    full = BackendRegistry(everything)
    assert full.warm_up_names(["auto"]) == ["guidance"]
    assert full.warm_up_names(["all"]) == list(BUILTIN)
    assert full.warm_up_names(["outlines-core", "auto", "outlines"]) == ["outlines", "guidance"]
    assert lean().warm_up_names(["all"]) == ["guidance"]


def test_warming_up_a_missing_or_unknown_backend_is_refused() -> None:
    with pytest.raises(UnsupportedParameter, match=r"pampero\[xgrammar\]"):
        lean().warm_up_names(["xgrammar"])
    with pytest.raises(InvalidRequestError, match="unknown constraint backend 'nope'"):
        lean().warm_up_names(["nope"])


def test_settings_refuse_an_unknown_backend_to_warm_up() -> None:
    assert Settings().constraint_warm_up == ["auto"]
    with pytest.raises(ValidationError, match="unknown constraint backend 'nope'"):
        Settings(constraint_warm_up=["nope"])


def test_an_engine_whose_extra_is_missing_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    monkeypatch.setitem(engines.REQUIRES, "transformers", (("torch", ABSENT), "transformers"))
    with pytest.raises(UnsupportedParameter) as refused:
        engines.check("transformers")
    assert refused.value.param == "engine"
    assert f"needs {ABSENT}" in refused.value.message
    assert "pip install 'pampero[transformers]'" in refused.value.message
    code = cli.main(["serve", "--model", f"m={tmp_path}", "--engine", "transformers"])
    assert code == 2
    assert "pip install 'pampero[transformers]'" in capsys.readouterr().err


def test_tiny_vlm_without_the_transformers_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name)
    )
    assert cli.main(["dev", "tiny-vlm", str(tmp_path / "out")]) == 2
    assert "needs transformers: pip install 'pampero[transformers]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unknown_engine_lists_the_registered_ones() -> None:
    with pytest.raises(InvalidRequestError, match="available: llamacpp, transformers"):
        engines.check("nope")
    engines.check("llamacpp")  # core: always installed
