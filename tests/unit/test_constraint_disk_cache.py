"""Compiled constraints on disk: a second compiler (a restarted server) loads what the first
compiled, without a worker; a different vocabulary or library misses; the directory stays
within its bound; a torn entry is compiled again.

The fake backend records which process compiled each artifact, so a load from disk is told
apart from a fresh compile; the compile workers import it from this module.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.compiler import ConstraintCompiler
from pampero.constraints.disk_cache import DiskCache, code_version
from pampero.constraints.registry import BackendRegistry

HERE = "tests.unit.test_constraint_disk_cache"
TINY = ConstraintVocabulary("tiny", (b"a", b"b", b""), frozenset(), frozenset({2}), 3)
OTHER = ConstraintVocabulary("tiny", (b"a", b"c", b""), frozenset(), frozenset({2}), 3)


class PidBackend:
    """Its artifact names the process that compiled it."""

    name = "pid"

    def unsupported(self, spec: ConstraintSpec) -> str | None:
        return None

    def prepare(self, vocabulary: ConstraintVocabulary) -> None:
        return None

    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        return {"pid": os.getpid(), "value": spec.value, "pad": "x" * 1000}

    def load(self, artifact: Any, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        return artifact

    def footprint(self, compiled: Any) -> int:
        return 1000

    def matcher(self, compiled: Any) -> Any:
        return None


def registry() -> BackendRegistry:
    found = BackendRegistry({})
    found.register("pid", f"{HERE}:PidBackend")
    return found


def spec(value: Any) -> ConstraintSpec:
    return ConstraintSpec(kind="json_schema", value=json.dumps(value), param="guided_json")


async def compiled_by(
    disk: DiskCache, value: Any, vocabulary: ConstraintVocabulary = TINY
) -> tuple[int, list[int]]:
    """The pid in the artifact of ``value``, and the compiler's worker pids."""
    async with ConstraintCompiler(
        vocabulary, registry=registry(), disk_cache=disk, mask_budget=None
    ) as compiler:
        compiled = await compiler.compile(spec(value))
        pid = compiled.compiled["pid"]
        workers = compiler.worker_pids()
        await asyncio.sleep(0.2)  # the write to disk runs in the background
    return pid, workers


def test_a_restarted_compiler_loads_what_the_last_one_compiled(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path / "cache", max_bytes=1 << 20)
    first, workers = asyncio.run(compiled_by(disk, {"type": "integer"}))
    assert first in workers  # compiled in a worker of the first compiler
    again, workers = asyncio.run(compiled_by(disk, {"type": "integer"}))
    assert again == first and not workers  # from disk: no worker was needed
    other, workers = asyncio.run(compiled_by(disk, {"type": "string"}))
    assert other in workers  # another spec compiles
    changed, workers = asyncio.run(compiled_by(disk, {"type": "integer"}, OTHER))
    assert changed in workers  # another vocabulary does not reuse it
    assert len(list((tmp_path / "cache").glob("*.artifact"))) == 3


def test_the_directory_stays_within_its_bound(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path / "cache", max_bytes=5000)

    async def scenario() -> None:
        async with ConstraintCompiler(
            TINY, registry=registry(), disk_cache=disk, mask_budget=None
        ) as compiler:
            for i in range(20):
                await compiler.compile(spec({"const": i}))
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert 0 < disk.total_bytes() <= 5000
    assert len(list((tmp_path / "cache").glob("*.artifact"))) < 20
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_a_torn_entry_is_compiled_again(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path / "cache", max_bytes=1 << 20)
    first, _ = asyncio.run(compiled_by(disk, {"type": "integer"}))
    [entry] = (tmp_path / "cache").glob("*.artifact")
    entry.write_bytes(entry.read_bytes()[:10])
    again, workers = asyncio.run(compiled_by(disk, {"type": "integer"}))
    assert again in workers and again != first


def test_the_key_follows_the_library_and_the_backend_source() -> None:
    guidance = code_version("llguidance", "pampero.constraints.backends.llguidance:X")
    assert guidance.startswith("llguidance ")
    assert guidance != code_version("llguidance", "pampero.constraints.backends.outlines:X")
    assert code_version(None, "no.such.module:X") == "- -"
