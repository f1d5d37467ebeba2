"""Images through the transformers engine, served for real: the tiny Qwen2-VL's Hugging Face copy.

The suite is ``serve_contract.py``, the same one the llama.cpp engine passes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pampero.dev.tiny_vlm import TinyVLM
from tests.e2e.harness import Launcher
from tests.image_server import Server as ImageServer
from tests.vision.serve_contract import MODEL, ServeContract, Vision, serving


@pytest.fixture(scope="module")
def vlm(
    launch: Launcher, tiny_vlm: TinyVLM, image_host: ImageServer, canary: ImageServer
) -> Iterator[Vision]:
    model = ("--model", f"{MODEL}={tiny_vlm.hf_dir}", "--engine", "transformers")
    with serving(launch, model, image_host, canary) as vision:
        yield vision


class TestTransformersServesImages(ServeContract):
    """The contract, on the transformers engine."""
