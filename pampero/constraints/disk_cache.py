"""Compiled constraints kept on disk, so a restart does not compile every schema again.

What a backend's ``compile`` returns (the artifact: xgrammar's serialised grammar, outlines'
token automaton, guidance's checked grammar text) is written under the pampero home dir, one
file per entry, named by a hash of everything the artifact depends on: the backend, the
version of its library and the source of pampero's module for it, the vocabulary (every token's
bytes), the spec, the limits it was validated under and the mask budget it was probed against
(and pampero's constraint code itself).
A spec found there is loaded without a worker, validation or probe: they passed when it was
stored, under the same key. Only compiled artifacts are stored, never refusals.

The directory is bounded in bytes: each write evicts the least recently used files (reads
touch a file's mtime) until the total fits. Files are written to a temporary name and renamed,
so a crash never leaves half an entry; an entry that cannot be read is deleted and compiled
again. Entries are pickles: the directory must be writable by pampero alone, like the rest of
its home.

Example::

    cache = DiskCache(home / "constraint-cache", max_bytes=256 << 20)
    key = cache.key("xgrammar", "0.1.25", vocabulary_hash, spec.key())
    cache.put(key, artifact)
    cache.get(key)              # the artifact, or None
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import pickle
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from pampero.constraints.base import ConstraintVocabulary

_SUFFIX = ".artifact"


class DiskCache:
    """A directory of pickled artifacts, bounded to ``max_bytes``. Thread-safe enough for one
    process: writes are atomic renames, and a file evicted while read is a miss."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("a disk cache needs room for at least one byte")
        self.root = root
        self.max_bytes = max_bytes

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def get(self, key: str) -> Any | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
            value = pickle.loads(data)
        except FileNotFoundError:
            return None
        except Exception:  # a torn or foreign file: forget it, compile again
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used
        return value

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (skipped if it cannot be pickled or alone exceeds the bound)."""
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return
        if len(data) > self.max_bytes:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, temporary = tempfile.mkstemp(dir=self.root, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, self._path(key))
        except OSError:
            return  # a full or read-only disk makes the cache a no-op, not an error
        self._evict()

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _path(self, key: str) -> Path:
        return self.root / f"{key}{_SUFFIX}"

    def _entries(self) -> list[tuple[float, int, Path]]:
        found = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.root):
                if entry.name.endswith(_SUFFIX):
                    with contextlib.suppress(OSError):
                        stat = entry.stat()
                        found.append((stat.st_mtime, stat.st_size, Path(entry.path)))
        return found

    def _evict(self) -> None:
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                path.unlink()
            total -= size


def vocabulary_hash(vocabulary: ConstraintVocabulary) -> str:
    """A digest of every token's bytes and the special and end tokens."""
    digest = hashlib.sha256()
    for piece in vocabulary.pieces:
        digest.update(len(piece).to_bytes(4, "little"))
        digest.update(piece)
    digest.update(repr((sorted(vocabulary.special_ids), sorted(vocabulary.eos_ids))).encode())
    digest.update(str(vocabulary.size).encode())
    return digest.hexdigest()


@lru_cache(maxsize=64)
def code_version(module: str | None, target: str) -> str:
    """What a backend's artifacts depend on: its library's version (``module`` is its import
    name) and the source of the module that implements ``target`` (``module:Class``)."""
    library = "-"
    if module is not None:
        names = importlib.metadata.packages_distributions().get(module, [module])
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            library = f"{names[0]} {importlib.metadata.version(names[0])}"
    source = "-"
    with contextlib.suppress(ImportError, ValueError, OSError):
        spec = importlib.util.find_spec(target.split(":")[0])
        if spec is not None and spec.origin is not None:
            digest = hashlib.sha256(Path(spec.origin).read_bytes())
            digest.update(_constraints_source().encode())
            source = digest.hexdigest()
    return f"{library} {source}"


@lru_cache(maxsize=1)
def _constraints_source() -> str:
    """A digest of pampero's constraint code (what turns a spec into an artifact and back)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()
