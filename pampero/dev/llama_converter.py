"""llama.cpp's own Hugging Face to GGUF converter, fetched once from PyPI and cached.

The converter (``convert_hf_to_gguf.py``, its ``conversion`` package and the matching
``gguf-py``) ships in llama.cpp's sources, which are vendored in the llama-cpp-python sdist of
the installed version. ``ensure_converter`` downloads that sdist with pip, extracts only those
files into ``<home>/llama.cpp/convert-<version>/`` (through a temporary directory and a rename,
so a half-extracted converter is never used) and returns its directory. pampero's repository
never holds llama.cpp code.

Example::

    converter = ensure_converter(home)
    converter.convert(hf_dir, out / "model.gguf")
    converter.convert(hf_dir, out / "mmproj.gguf", mmproj=True)
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from pampero.errors import PamperoError

log = logging.getLogger(__name__)

_PACKAGE = "llama-cpp-python"
_INSIDE = "vendor/llama.cpp/"
_WANTED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
_SCRIPT = "convert_hf_to_gguf.py"


class ConverterError(PamperoError):
    """The converter could not be fetched, or a conversion failed."""


@dataclass(frozen=True)
class Converter:
    directory: Path

    @property
    def script(self) -> Path:
        return self.directory / _SCRIPT

    def convert(
        self, hf_dir: Path, outfile: Path, *, mmproj: bool = False, outtype: str = "f32"
    ) -> Path:
        """Convert the Hugging Face model in ``hf_dir`` to ``outfile`` (the text model, or with
        ``mmproj`` its multimodal projector). Raises ``ConverterError`` with the tool's output."""
        outfile.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(self.script), str(hf_dir), "--outfile", str(outfile)]
        command += ["--outtype", outtype, *(["--mmproj"] if mmproj else [])]
        # Without NO_LOCAL_GGUF the converter reads the gguf-py it shipped with, not the gguf
        # package installed here (which may be older or newer than the converter).
        env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
        env["HF_HUB_OFFLINE"] = "1"
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not outfile.is_file():
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise ConverterError(f"convert_hf_to_gguf.py failed on {hf_dir}:\n{tail}")
        return outfile


def ensure_converter(home: Path, *, llama_version: str | None = None) -> Converter:
    """The cached converter for the installed llama-cpp-python, fetching it on first use."""
    wanted = llama_version or version(_PACKAGE)
    target = home / "llama.cpp" / f"convert-{wanted}"
    if (target / _SCRIPT).is_file():
        return Converter(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as scratch:
        sdist = _download_sdist(wanted, Path(scratch))
        staging = Path(scratch) / "converter"
        _extract(sdist, staging)
        try:
            staging.rename(target)
        except OSError:  # another process won the race; its copy is as good as ours
            if not (target / _SCRIPT).is_file():
                raise
    return Converter(target)


def _download_sdist(wanted: str, into: Path) -> Path:
    log.info("fetching llama.cpp's converter from the %s %s sdist", _PACKAGE, wanted)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    command += ["--disable-pip-version-check", "-q", "-d", str(into), f"{_PACKAGE}=={wanted}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(into.glob("*.tar.gz"))
    if done.returncode != 0 or not found:
        tail = "\n".join(done.stderr.strip().splitlines()[-10:])
        raise ConverterError(f"could not download the {_PACKAGE}=={wanted} sdist:\n{tail}")
    return found[0]


def _extract(sdist: Path, staging: Path) -> None:
    with tarfile.open(sdist, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            _, _, inner = member.name.partition("/")
            if not inner.startswith(_INSIDE):
                continue
            relative = inner[len(_INSIDE) :]
            if relative.startswith(_WANTED) and (member.isfile() or member.isdir()):
                member.name = relative
                members.append(member)
        if not any(m.name == _SCRIPT for m in members):
            raise ConverterError(f"{sdist.name} has no {_INSIDE}{_SCRIPT}")
        staging.mkdir(parents=True)
        archive.extractall(staging, members=members, filter="data")
    # Tests and docs of gguf-py are not needed to convert.
    shutil.rmtree(staging / "gguf-py" / "tests", ignore_errors=True)
