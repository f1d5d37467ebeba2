"""pampero's packages import one way only, as ``layers.toml`` orders them."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pampero"


def layer_of() -> dict[str, int]:
    layers = tomllib.loads((ROOT / "layers.toml").read_text(encoding="utf-8"))["layers"]
    return {name: depth for depth, names in enumerate(layers) for name in names}


def top_level(path: Path) -> str:
    """The package (or top-level module) of pampero that ``path`` belongs to."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, pampero package) for every import of another part of pampero in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n.split(".")[1]) for n in names if n.startswith("pampero.")]
    return found


def test_every_package_has_a_layer() -> None:
    depth = layer_of()
    packages = {top_level(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert packages - set(depth) == set(), "add these to layers.toml"
    assert set(depth) - packages == set(), "layers.toml names what does not exist"


def test_imports_go_down_only() -> None:
    depth = layer_of()
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = top_level(path)
        if own == "__init__":
            continue
        for line, target in imports(path):
            if target != own and depth[target] <= depth[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} {own} -> {target}")
    assert wrong == [], "imports against layers.toml:\n" + "\n".join(wrong)


def test_relative_imports_are_not_used() -> None:
    # The check above reads absolute imports; a relative one would slip past it.
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)), (
            f"{path}: use absolute imports"
        )


def test_test_modules_have_unique_basenames() -> None:
    # The test folders are not packages: pytest imports each file by its basename, so two
    # files of one name in different folders stop the whole run at collection.
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
