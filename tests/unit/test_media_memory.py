"""Decoding a pixel bomb costs bounded memory, and gives it back.

The image is the one from issue 15: a 7000 x 7000 palette PNG with a transparent colour, 48 KB
on the wire, under the 50 MP per-image cap. Before, decoding it peaked at 655 MB over the
process's baseline and kept 501 MB of that for good (the RGBA and RGB copies were freed
into a worker thread's glibc arena). Each measurement runs in a fresh interpreter, so the
numbers are this decode's alone; the bounds leave a wide margin for allocator noise.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

MEASURE = textwrap.dedent(
    """
    import json, sys, threading
    from pampero.media.decode import decode_image

    def status_mb(field):
        # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent
        # process across fork and exec, and pytest's own resident size would count.
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024

    def rss_mb():
        return status_mb("VmRSS")

    with open(sys.argv[1], "rb") as f:
        data = f.read()
    # A server has long since freed large images: glibc then serves allocations of that size
    # from its heaps (its mmap threshold rises), where freed memory stays unless trimmed.
    from PIL import Image
    Image.new("RGB", (3000, 3000)).tobytes()
    base = rss_mb()
    out = {}
    worker = threading.Thread(  # as ImageSource decodes: in a worker thread
        target=lambda: out.update(d=decode_image(data, max_pixels=50_000_000, detail="auto"))
    )
    worker.start()
    worker.join()
    size = out["d"].image.size
    del out["d"]
    peak = status_mb("VmHWM")
    print(json.dumps({"size": size, "peak": peak - base, "kept": rss_mb() - base}))
    """
)


def palette_bomb() -> bytes:
    img = Image.new("P", (7000, 7000), 0)
    img.putpalette([i % 256 for i in range(768)])
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)
    return buf.getvalue()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc for RSS")
def test_a_palette_bomb_decodes_in_bounded_memory_and_gives_it_back(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(palette_bomb())
    assert bomb.stat().st_size < 100_000  # it really is a bomb
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(bomb)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["size"] == [2048, 2048]  # decoded to the size a model uses
    assert result["peak"] < 250, result  # MB over the baseline (was ~650)
    assert result["kept"] < 64, result  # MB still resident after (was ~500)
