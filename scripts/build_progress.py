"""Condense a verbose ``pip wheel -v`` of llama-cpp-python into a line per stage.

The compile is the longest step of a first install (6-10 minutes on two cores). pip's quiet mode
says nothing for all that time and its verbose mode prints thousands of compiler lines; this
filter keeps every line in a log file and prints only:

- the build's stages (pip's and scikit-build-core's ``*** ...`` lines, CMake's configure steps),
- compile progress each time it passes another 10% (Ninja's ``[n/m]`` or Make's ``[ nn%]``),
- a heartbeat when nothing was printed for 30 s, with the elapsed time and the last progress.

Standard library only: it runs before anything is installed. Usage::

    pip wheel -v ... 2>&1 | python scripts/build_progress.py build.log
"""

from __future__ import annotations

import queue
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

HEARTBEAT_S = 30.0
STEP_PERCENT = 10

_NINJA = re.compile(r"^\s*\[(\d+)/(\d+)\]")
_MAKE = re.compile(r"^\s*\[\s*(\d+)%\]")
_STAGES = (
    re.compile(r"^\s*\*\*\* (.+)"),  # scikit-build-core: configuring, building, making the wheel
    re.compile(r"^\s*-- ((?:Configuring done|Generating done|Build files have been written).*)"),
    re.compile(r"^\s*((?:Building wheel for|Created wheel for|Successfully built) .+)"),
    re.compile(r"^\s*((?:Installing build dependencies|Getting requirements to build wheel).*)"),
)


class Progress:
    """What to print for each line of the build's output, and when a heartbeat is due."""

    def __init__(self, now: float) -> None:
        self.started = now
        self.last_print = now
        self.percent: int | None = None  # compile progress, once the compile has begun
        self._shown_percent = -STEP_PERCENT
        self._stages: set[str] = set()

    def feed(self, line: str, now: float) -> str | None:
        """The line to print for ``line`` of the build's output, if any."""
        message = self._message(line.rstrip())
        if message is not None:
            self.last_print = now
            return f"    [{_clock(now - self.started)}] {message}"
        return None

    def tick(self, now: float) -> str | None:
        """A heartbeat if nothing was printed for ``HEARTBEAT_S``."""
        if now - self.last_print < HEARTBEAT_S:
            return None
        self.last_print = now
        done = f", compiled {self.percent}%" if self.percent is not None else ""
        return f"    [{_clock(now - self.started)}] still building{done}"

    def _message(self, line: str) -> str | None:
        percent = _percent(line)
        if percent is not None:
            self.percent = percent
            step = percent >= self._shown_percent + STEP_PERCENT
            if not step and not (percent == 100 and self._shown_percent != 100):
                return None
            self._shown_percent = percent
            return f"compiling llama.cpp: {percent}%"
        for pattern in _STAGES:
            found = pattern.match(line)
            if found is not None:
                stage = found.group(1).strip()
                if stage in self._stages:
                    return None
                self._stages.add(stage)
                return stage
        return None


def _percent(line: str) -> int | None:
    ninja = _NINJA.match(line)
    if ninja is not None:
        done, total = int(ninja.group(1)), int(ninja.group(2))
        return 100 * done // total if total else None
    make = _MAKE.match(line)
    return int(make.group(1)) if make is not None else None


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def _lines(stream: TextIO) -> Iterator[str | None]:
    """The stream's lines, with ``None`` each second that brings none (so heartbeats can run)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            yield None
            continue
        if line is None:
            return
        yield line


def main(log_path: str) -> int:
    progress = Progress(time.monotonic())
    with open(log_path, "w", encoding="utf-8") as log:
        for line in _lines(sys.stdin):
            now = time.monotonic()
            shown = None
            if line is not None:
                log.write(line)
                shown = progress.feed(line, now)
            else:
                log.flush()
            if shown is None:
                shown = progress.tick(now)
            if shown is not None:
                print(shown, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
