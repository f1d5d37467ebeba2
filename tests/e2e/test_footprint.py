"""An idle server holds no heavy library that no setting asked for.

With every backend installed (the test profile), start-up warms only the backend ``auto`` tries
first (guidance); xgrammar, which brings torch, and outlines load on first use or when
``--constraint-warm-up`` names them. Read from the shared libraries mapped into the server and its
compile workers, once the workers' warm-up is done.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Launcher

HEAVY = re.compile(r"/(torch|xgrammar|outlines_core|triton)[/_.]")
WARM_UP_TIMEOUT_S = 120.0


def family(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += family(int(child))
    return found


def libraries(pid: int) -> set[str]:
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return set()
    return {line.split()[-1] for line in lines if ".so" in line}


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc")
def test_an_idle_server_loads_only_the_backend_auto_tries_first(launch: Launcher) -> None:
    with launch() as server:
        pid = server.process.pid
        deadline = time.monotonic() + WARM_UP_TIMEOUT_S
        while True:
            workers = family(pid)[1:]
            if any("llguidance" in lib for w in workers for lib in libraries(w)):
                break  # the workers are warmed, after the server process itself
            assert time.monotonic() < deadline, "no compile worker prepared guidance"
            time.sleep(0.5)
        loaded = {lib for p in family(pid) for lib in libraries(p)}
        assert any("llguidance" in lib for lib in libraries(pid))
        assert sorted(lib for lib in loaded if HEAVY.search(lib)) == []
