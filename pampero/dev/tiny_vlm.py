"""``pampero dev tiny-vlm OUT_DIR``: a tiny, randomly initialised vision-language model.

No pretrained vision weights can be downloaded here, so tests (and anyone wanting to try images
locally) build one: a Qwen2-VL with a 64-wide, 2-layer language model and a 3-block, 32-wide
vision tower, seeded and deterministic. Its tokenizer is the default model's vocabulary (Qwen2.5,
which already has ``<|vision_start|>``, ``<|image_pad|>`` and ``<|vision_end|>``), read from that
model's GGUF; its image processor is Qwen2-VL's default with llama.cpp's image-token limits, so both
engines count the same tokens for an image. Then llama.cpp's own converter (see
``pampero.dev.llama_converter``) turns it into a GGUF text model and an ``mmproj`` GGUF.

Layout of ``OUT_DIR``::

    hf/               config.json, model.safetensors, tokenizer.json, preprocessor_config.json,
                      chat_template.jinja, ...   (serve with --engine transformers)
    gguf/model.gguf   the language model          (serve with --model ... --mmproj ...)
    gguf/mmproj.gguf  the vision tower and projector

Qwen2-VL rather than Qwen2.5-VL: llama.cpp supports both, but 2.5's windowed vision attention adds
hyper-parameters (window size, full-attention blocks) that a tiny tower would only fake.

Example::

    tiny = build_tiny_vlm(Path("/tmp/tiny"), home=settings.home)
    print(*tiny.llamacpp_args())
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pampero.assets import ensure_default_model
from pampero.dev.gguf_meta import read_metadata
from pampero.dev.llama_converter import ensure_converter

# Bump when the model, its files or its conversion change: cached builds are keyed by it.
BUILDER_VERSION = 1
DEFAULT_SEED = 0
SERVED_ID = "tiny-vlm"

_PATCH = 14
_MERGE = 2
# llama.cpp's Qwen2-VL limits (tools/mtmd/clip.cpp: set_limit_image_tokens(8, 4096)), in pixels.
_MIN_PIXELS = 8 * (_PATCH * _MERGE) ** 2
_MAX_PIXELS = 4096 * (_PATCH * _MERGE) ** 2

# Token types of a GGUF vocabulary (gguf.TokenType).
_CONTROL, _USER_DEFINED, _UNUSED = 3, 4, 5

# Qwen2-VL-Instruct's chat template.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

Report = Callable[[str], None]


@dataclass(frozen=True)
class TinyVLM:
    """Where a built tiny model's files are, and the ``pampero serve`` arguments for each copy."""

    root: Path

    @property
    def hf_dir(self) -> Path:
        return self.root / "hf"

    @property
    def model_gguf(self) -> Path:
        return self.root / "gguf" / "model.gguf"

    @property
    def mmproj_gguf(self) -> Path:
        return self.root / "gguf" / "mmproj.gguf"

    def is_complete(self) -> bool:
        return all(
            p.is_file() for p in (self.hf_dir / "config.json", self.model_gguf, self.mmproj_gguf)
        )

    def llamacpp_args(self) -> list[str]:
        return ["--model", str(self.model_gguf), "--mmproj", str(self.mmproj_gguf)]

    def transformers_args(self) -> list[str]:
        return ["--model", f"{SERVED_ID}={self.hf_dir}", "--engine", "transformers"]


def build_tiny_vlm(
    out_dir: Path, *, home: Path, seed: int = DEFAULT_SEED, report: Report | None = None
) -> TinyVLM:
    """Build the Hugging Face model under ``out_dir/hf`` and its GGUF pair under ``out_dir/gguf``.

    ``home`` (PAMPERO_HOME) provides the default model, whose vocabulary the tiny model uses,
    and caches llama.cpp's converter."""
    say = report or (lambda _line: None)
    tiny = TinyVLM(out_dir)
    started = time.monotonic()
    say(f"building a tiny Qwen2-VL (seed {seed}) in {tiny.hf_dir}")
    build_hf(tiny.hf_dir, vocab_gguf=ensure_default_model(home), seed=seed)
    converter = ensure_converter(home)
    say(f"converting to GGUF with llama.cpp's converter ({converter.directory})")
    converter.convert(tiny.hf_dir, tiny.model_gguf)
    converter.convert(tiny.hf_dir, tiny.mmproj_gguf, mmproj=True)
    say(f"built in {time.monotonic() - started:.1f}s")
    return tiny


def cached_tiny_vlm(home: Path, *, report: Report | None = None) -> TinyVLM:
    """The tiny model built once under ``home`` for this builder and llama.cpp version."""
    key = f"tiny-vlm-v{BUILDER_VERSION}-llama{version('llama-cpp-python')}"
    tiny = TinyVLM(home / "dev" / key)
    if tiny.is_complete():
        return tiny
    tiny.root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tiny.root.parent, prefix=f".{key}-") as scratch:
        build_tiny_vlm(Path(scratch) / "out", home=home, report=report)
        shutil.rmtree(tiny.root, ignore_errors=True)  # an incomplete earlier build
        try:
            (Path(scratch) / "out").rename(tiny.root)
        except OSError:  # a concurrent build finished first
            if not tiny.is_complete():
                raise
    return tiny


def build_hf(out_dir: Path, *, vocab_gguf: Path, seed: int = DEFAULT_SEED) -> None:
    """Save the randomly initialised model, its tokenizer, image processor and chat template."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration
    from transformers.utils import logging as hf_logging

    tokenizer, vocab_size = _tokenizer(vocab_gguf)
    config = _config(vocab_size=vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config).eval()  # type: ignore[no-untyped-call]
    model.generation_config.eos_token_id = [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]
    model.generation_config.pad_token_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    bars_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model.save_pretrained(out_dir)
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    tokenizer.save_pretrained(out_dir)
    _image_processor().save_pretrained(out_dir)
    # As Qwen2-VL checkpoints do: name the processor that joins tokenizer and image processor.
    for name in ("tokenizer_config.json", "preprocessor_config.json"):
        _patch_json(out_dir / name, processor_class="Qwen2VLProcessor")


def _config(*, vocab_size: int) -> Any:
    from transformers import Qwen2VLConfig

    head_dim = 16  # hidden 64 / 4 heads; M-RoPE splits head_dim/2 = 8 into (t, h, w) = 2+3+3
    return Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 64 // head_dim,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": [2, 3, 3],
            },
            "tie_word_embeddings": True,
        },
        # llama.cpp's converter maps the projector's layers by block index up to the tower's
        # depth, and the projector has a layer 2: the tower needs at least 3 blocks.
        vision_config={
            "depth": 3,
            "embed_dim": 32,
            "hidden_size": 64,
            "mlp_ratio": 2,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": _PATCH,
            "spatial_merge_size": _MERGE,
            "temporal_patch_size": 2,
        },
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=True,
    )


def _tokenizer(vocab_gguf: Path) -> tuple[Any, int]:
    """A ``Qwen2Tokenizer`` with exactly the GGUF's vocabulary, merges and control tokens, and
    the GGUF's vocabulary size (padding slots included) for the model's embedding rows."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    meta = read_metadata(
        vocab_gguf,
        {
            "tokenizer.ggml.model",
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.merges",
        },
    )
    if meta.get("tokenizer.ggml.model") != b"gpt2":
        raise ValueError(f"{vocab_gguf} does not hold a byte-level BPE vocabulary")
    tokens = [t.decode("utf-8") for t in meta["tokenizer.ggml.tokens"]]
    kinds: list[int] = meta["tokenizer.ggml.token_type"]
    vocab = {
        token: i
        for i, (token, kind) in enumerate(zip(tokens, kinds, strict=True))
        if kind != _UNUSED
    }
    merges = [tuple(m.decode("utf-8").split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    # Qwen's tokenizer has no unknown token; the BPE model takes merges as pairs.
    options: dict[str, Any] = {"merges": merges, "unk_token": None, "errors": "replace"}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, eos_token="<|im_end|>", pad_token="<|endoftext|>", **options
    )
    tokenizer.add_tokens(
        [
            AddedToken(tokens[i], special=kind == _CONTROL, normalized=False)
            for i, kind in enumerate(kinds)
            if kind in (_CONTROL, _USER_DEFINED)
        ]
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer, len(tokens)


def _image_processor() -> Any:
    # The PIL backend needs no torchvision; a checkpoint saved from it loads with either backend.
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    return Qwen2VLImageProcessorPil(
        min_pixels=_MIN_PIXELS,
        max_pixels=_MAX_PIXELS,
        patch_size=_PATCH,
        merge_size=_MERGE,
        temporal_patch_size=2,
    )


def _patch_json(path: Path, **values: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(values)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(out_dir: Path, home: Path) -> int:
    """The ``pampero dev tiny-vlm`` command; the last line printed is the serve arguments."""
    tiny = build_tiny_vlm(
        out_dir.expanduser().resolve(), home=home, report=lambda line: print(line, file=sys.stderr)
    )
    print(f"transformers engine: pampero serve {' '.join(tiny.transformers_args())}")
    print(" ".join(tiny.llamacpp_args()))
    return 0
