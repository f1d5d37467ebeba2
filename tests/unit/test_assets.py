"""Assembling a file shipped as parts inside installed packages (how the default model ships)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from pampero import assets
from pampero.assets import AssetError, PartedFile, ensure_parted_file


class Parts:
    """Packages ``<prefix>_partN`` with ``data/partNN.bin`` on ``sys.path``, and their spec."""

    def __init__(self, root: Path, chunks: list[bytes]) -> None:
        self.prefix = f"pampero_test_parts_{root.name.replace('-', '_')}"
        self.chunks = chunks
        self.content = b"".join(chunks)
        self.paths: list[Path] = []
        for i, chunk in enumerate(chunks, 1):
            package = root / "site" / f"{self.prefix}_part{i}"
            (package / "data").mkdir(parents=True)
            (package / "__init__.py").write_text("")
            self.paths.append(package / "data" / f"part{i:02d}.bin")
            self.paths[-1].write_bytes(chunk)

    def spec(self, **changes: object) -> PartedFile:
        fields: dict[str, object] = {
            "filename": "model.gguf",
            "size": len(self.content),
            "sha256": hashlib.sha256(self.content).hexdigest(),
            "parts": tuple(
                (f"{self.prefix}_part{i}", f"data/part{i:02d}.bin")
                for i in range(1, len(self.chunks) + 1)
            ),
        }
        fields.update(changes)
        return PartedFile(**fields)  # type: ignore[arg-type]


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Parts:
    rng = random.Random(7)
    chunks = [rng.randbytes(n) for n in (3000, 5000, 0, 100)]
    made = Parts(tmp_path, chunks)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(assets, "_CHUNK", 1024)  # several reads per part
    return made


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def quiet(done: int, total: int) -> None:
    pass


def test_the_parts_assemble_into_the_exact_file(parts: Parts, tmp_path: Path) -> None:
    out = tmp_path / "home" / "models"
    calls: list[tuple[int, int]] = []
    path = ensure_parted_file(parts.spec(), out, progress=lambda d, t: calls.append((d, t)))
    assert path == out / "model.gguf"
    assert path.read_bytes() == parts.content
    assert leftovers(out) == ["model.gguf"]  # no temporary file left
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (8100, 8100)
    assert len(calls) > len(parts.chunks)


def test_a_verified_file_is_not_rebuilt(parts: Parts, tmp_path: Path) -> None:
    path = ensure_parted_file(parts.spec(), tmp_path, progress=quiet)
    calls: list[int] = []
    assert ensure_parted_file(parts.spec(), tmp_path, progress=lambda d, t: calls.append(d)) == path
    assert calls == []


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "empty", "too long"])
def test_a_partial_or_corrupt_file_is_rebuilt(parts: Parts, tmp_path: Path, damage: str) -> None:
    target = tmp_path / "model.gguf"
    data = bytearray(parts.content)
    if damage == "truncated":
        data = data[:5000]
    elif damage == "flipped byte":
        data[4321] ^= 0xFF
    elif damage == "empty":
        data = bytearray()
    else:
        data += b"\0"
    target.write_bytes(bytes(data))
    assert ensure_parted_file(parts.spec(), tmp_path, progress=quiet).read_bytes() == parts.content


def test_parts_that_do_not_add_up_are_refused_without_leaving_a_file(
    parts: Parts, tmp_path: Path
) -> None:
    parts.paths[1].write_bytes(parts.chunks[1][:-1] + b"?")  # same size, other bytes
    out = tmp_path / "out"
    with pytest.raises(AssetError) as refused:
        ensure_parted_file(parts.spec(), out, progress=quiet)
    assert "sha256" in refused.value.message
    assert leftovers(out) == []


def test_a_part_of_the_wrong_size_is_refused(parts: Parts, tmp_path: Path) -> None:
    parts.paths[0].write_bytes(parts.chunks[0] + b"extra")
    with pytest.raises(AssetError):
        ensure_parted_file(parts.spec(), tmp_path / "out", progress=quiet)
    assert leftovers(tmp_path / "out") == []


def test_a_corrupt_file_is_never_returned_when_it_cannot_be_rebuilt(
    parts: Parts, tmp_path: Path
) -> None:
    target = tmp_path / "model.gguf"
    target.write_bytes(parts.content[:-1] + b"!")
    parts.paths[3].unlink()
    with pytest.raises(AssetError):
        ensure_parted_file(parts.spec(), tmp_path, progress=quiet)
    assert not any(name.endswith(".partial") for name in leftovers(tmp_path))


def test_a_missing_package_names_what_to_install(parts: Parts, tmp_path: Path) -> None:
    spec = parts.spec(parts=(("pampero_no_such_package_part1", "data/part01.bin"),))
    with pytest.raises(AssetError) as refused:
        ensure_parted_file(spec, tmp_path / "out", progress=quiet)
    assert "pampero_no_such_package_part1" in refused.value.message
    assert leftovers(tmp_path / "out") == []


def test_progress_goes_to_stderr_by_default(
    parts: Parts, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ensure_parted_file(parts.spec(), tmp_path)
    err = capsys.readouterr().err
    assert "model.gguf" in err and "100%" in err and err.endswith("\n")
