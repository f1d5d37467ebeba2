"""scripts/build_progress.py: the llama-cpp-python compile shown as a line per stage."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build_progress.py"


def module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_progress", SCRIPT)
    assert spec is not None and spec.loader is not None
    found = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(found)
    return found


BUILD = [
    "Using pip 23.2.1 from /x/pip (python 3.11)",
    "  Installing build dependencies: started",
    "  Running command pip subprocess to install build dependencies",
    "  Collecting scikit-build-core[pyproject]>=0.9.2",
    "  Getting requirements to build wheel: started",
    "  *** scikit-build-core 0.11.5 using CMake 3.25.1 (wheel)",
    "  *** Configuring CMake...",
    "  -- The C compiler identification is GNU 12.2.0",
    "  -- Configuring done",
    "  -- Generating done",
    "  *** Building project with Ninja...",
    *[f"  [{i}/40] Building CXX object vendor/llama.cpp/src/f{i}.cpp.o" for i in range(1, 41)],
    "  *** Installing project into wheel...",
    "  *** Making wheel...",
    "  Building wheel for llama-cpp-python (pyproject.toml): finished with status 'done'",
    "  Created wheel for llama-cpp-python: filename=llama_cpp_python-0.3.36-py3-none-linux.whl",
]


def test_a_build_is_a_line_per_stage_and_a_line_per_tenth_of_the_compile() -> None:
    progress = module().Progress(0.0)
    shown = [s for i, line in enumerate(BUILD) if (s := progress.feed(line, float(i)))]
    messages = [s.split("] ", 1)[1] for s in shown]
    assert messages[:5] == [
        "Installing build dependencies: started",
        "Getting requirements to build wheel: started",
        "scikit-build-core 0.11.5 using CMake 3.25.1 (wheel)",
        "Configuring CMake...",
        "Configuring done",
    ]
    compiled = [m for m in messages if m.startswith("compiling")]
    steps = (2, 12, 22, 32, 42, 52, 62, 72, 82, 92, 100)
    assert compiled == [f"compiling llama.cpp: {p}%" for p in steps]
    assert messages[-2:] == [
        "Building wheel for llama-cpp-python (pyproject.toml): finished with status 'done'",
        "Created wheel for llama-cpp-python: filename=llama_cpp_python-0.3.36-py3-none-linux.whl",
    ]
    assert len(shown) < len(BUILD) / 2
    assert shown[0].startswith("    [0m01s] ")


def test_make_percentages_count_too() -> None:
    progress = module().Progress(0.0)
    shown = [progress.feed(f"[ {p:2d}%] Building C object x.o", 1.0) for p in (1, 5, 11, 30, 100)]
    assert shown == [
        "    [0m01s] compiling llama.cpp: 1%",
        None,
        "    [0m01s] compiling llama.cpp: 11%",
        "    [0m01s] compiling llama.cpp: 30%",
        "    [0m01s] compiling llama.cpp: 100%",
    ]


def test_a_silent_stretch_gets_a_heartbeat_every_thirty_seconds() -> None:
    progress = module().Progress(0.0)
    assert progress.tick(29.0) is None
    progress.feed("[10/100] Building CXX object a.o", 20.0)
    assert progress.tick(49.0) is None
    assert progress.tick(50.5) == "    [0m50s] still building, compiled 10%"
    assert progress.tick(60.0) is None
    assert progress.tick(81.0) == "    [1m21s] still building, compiled 10%"


def test_the_script_logs_everything_and_prints_the_stages(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(log)],
        input="\n".join(BUILD) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert log.read_text().splitlines() == BUILD
    assert "compiling llama.cpp: 100%" in done.stdout
    assert "Building CXX object" not in done.stdout
