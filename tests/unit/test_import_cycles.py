"""Each module of the HTTP edge imports on its own, in a fresh interpreter, in any order: an
import cycle (middleware -> openapi -> routes -> accounts -> middleware) fails here, not only in
whichever test module happens to import things in the unlucky order."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import pampero.api

EDGE = sorted(f"pampero.api.{m.name}" for m in pkgutil.iter_modules(pampero.api.__path__))


@pytest.mark.parametrize("module", EDGE)
def test_a_module_of_the_edge_imports_first(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
