"""pampero as a normal package: ``python -m build``, then ``pip install dist/pampero-*.whl`` in an
empty virtual environment, as someone outside this repository would.

The install takes llama-cpp-python from the wheel ``scripts/install.sh`` compiled and cached for
this machine (``--only-binary`` so nothing compiles); the other dependencies come from the package
index. The fresh environment is the lean one: no extras, so no torch, and only the structured-output
backend that ships with pampero, which ``auto`` must still use.
"""

from __future__ import annotations

import email.parser
import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LLAMA_VERSION = "0.3.36"
# Each step's limit; the whole test stays within pytest's mark below.
STEP_TIMEOUT_S = 240

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(480)]


def llama_wheel_dir() -> Path:
    """Where scripts/install.sh caches the compiled llama-cpp-python (same key, same place)."""
    cache = os.environ.get("PAMPERO_WHEEL_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pampero" / "wheels"
    )
    line = os.uname().machine
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"^(flags|Features).*$", cpuinfo.read_text(), re.MULTILINE)
        line = found.group(0) if found else line
    key = hashlib.sha256(f"{line}\n".encode()).hexdigest()[:12]
    return Path(cache) / f"llama-cpp-python-{LLAMA_VERSION}-{key}"


def run(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``python -m build`` makes (sdist, then the wheel from the sdist) of a copy of
    the sources, so the build writes nothing into the work tree."""
    work = tmp_path_factory.mktemp("build")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "pampero", source / "pampero", ignore=skip)
    run([sys.executable, "-m", "build", "--outdir", work / "dist", source], cwd=work)
    (wheel,) = (work / "dist").glob("pampero-*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty virtual environment with only ``pip install dist/pampero-*.whl`` in it."""
    wheels = llama_wheel_dir()
    if not list(wheels.glob(f"llama_cpp_python-{LLAMA_VERSION}-*.whl")):
        pytest.skip(f"no cached llama-cpp-python wheel in {wheels} (scripts/install.sh makes it)")
    home = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", home / "venv"], cwd=home)
    python = home / "venv" / "bin" / "python"
    run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
         "--find-links", wheels, "--only-binary", "llama-cpp-python", built],
        cwd=home,
    )  # fmt: skip
    yield home / "venv"


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_wheel_holds_the_package_and_its_data_only(built: Path) -> None:
    with zipfile.ZipFile(built) as archive:
        names = set(archive.namelist())
    assert "pampero/py.typed" in names
    assert "pampero/cli.py" in names
    assert "pampero/engines/llamacpp/engine.py" in names
    # The browser pages and their vendored assets (with the licence) ship inside the package.
    for asset in ("playground/index.html", "playground/main.js", "swagger/swagger-ui-bundle.js"):
        assert f"pampero/web/static/{asset}" in names
    assert "pampero/web/static/swagger/LICENSE" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "scripts/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(built) as archive:
        assert "pampero = pampero.cli:main" in archive.read(entry_points).decode()


def test_the_core_requirements_are_lean_and_the_extras_are_declared(built: Path) -> None:
    meta = metadata(built)
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"default-model", "structured-all", "xgrammar", "outlines", "lmfe", "transformers",
            "dev", "bench"} <= extras  # fmt: skip
    requires = meta.get_all("Requires-Dist") or []
    core = [r for r in requires if "extra ==" not in r]
    core_names = {re.split(r"[\s\[<>=!~;(]", r, maxsplit=1)[0].lower() for r in core}
    assert {"llama-cpp-python", "llguidance", "pillow", "uvicorn"} <= core_names
    assert not core_names & {"torch", "transformers", "xgrammar", "outlines-core", "pytest"}
    by_extra = {e: [r for r in requires if f'extra == "{e}"' in r] for e in extras}
    assert any(r.startswith("torch") for r in by_extra["transformers"])
    assert any(r.startswith("pampero[") and "xgrammar" in r for r in by_extra["structured-all"])


def test_the_installed_wheel_runs_without_the_work_tree(venv: Path, tmp_path: Path) -> None:
    bin_dir = venv / "bin"
    shown = run([bin_dir / "pampero", "--help"], cwd=tmp_path)
    assert "serve" in shown.stdout
    check = textwrap.dedent(
        """
        import importlib.resources, importlib.util, sys
        import pampero, pampero.api.app, pampero.engines.llamacpp.engine, llama_cpp
        assert importlib.resources.files("pampero").joinpath("py.typed").is_file()
        assert pampero.__file__.startswith(sys.prefix), pampero.__file__
        print(*(n for n in ("torch", "transformers", "xgrammar") if importlib.util.find_spec(n)))
        """
    )
    imported = run([bin_dir / "python", "-c", check], cwd=tmp_path)
    assert imported.stdout.strip() == "", f"the lean install holds {imported.stdout.strip()}"


def test_auto_uses_the_bundled_backend_and_the_others_name_their_extra(
    venv: Path, tmp_path: Path
) -> None:
    check = textwrap.dedent(
        """
        from pampero.constraints.base import ConstraintSpec
        from pampero.constraints.registry import BackendRegistry
        from pampero.errors import UnsupportedParameter

        registry = BackendRegistry()
        assert registry.available() == ["guidance"], registry.available()
        spec = ConstraintSpec(kind="json_schema", value='{"type": "object"}', param="p")
        assert registry.candidates(spec) == ["guidance"]
        for backend, extra in (("xgrammar", "xgrammar"), ("outlines", "outlines"),
                               ("lm-format-enforcer", "lmfe")):
            try:
                registry.candidates(
                    ConstraintSpec(kind="json_schema", value="{}", param="p", backend=backend)
                )
            except UnsupportedParameter as exc:
                assert f"pip install 'pampero[{extra}]'" in exc.message, exc.message
            else:
                raise AssertionError(f"{backend} was not refused")
        """
    )
    run([venv / "bin" / "python", "-c", check], cwd=tmp_path)


def test_the_transformers_engine_without_its_extra_is_refused_at_start(
    venv: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "hf-model"
    model_dir.mkdir()
    done = subprocess.run(
        [venv / "bin" / "pampero", "serve", "--model", f"m={model_dir}", "--engine", "transformers",
         "--port", "0", "--home", tmp_path / "home"],
        cwd=tmp_path, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "pip install 'pampero[transformers]'" in done.stderr
