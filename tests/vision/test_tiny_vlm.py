"""The tiny vision-language model: its files, and that transformers and llama.cpp's mtmd load it."""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pampero import cli
from pampero.dev import tiny_vlm as builder
from pampero.dev.gguf_meta import read_metadata
from pampero.dev.tiny_vlm import TinyVLM
from tests.vision.support import noise_image

IMAGE_PAD, VISION_START, VISION_END = 151655, 151652, 151653
PROMPT = "<|im_start|>user\nWhat is in <__media__> this picture?<|im_end|>\n<|im_start|>assistant\n"


def test_the_build_has_both_copies(tiny_vlm: TinyVLM) -> None:
    files = {p.name for p in tiny_vlm.hf_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
        "chat_template.jinja",
    } <= files
    assert tiny_vlm.model_gguf.stat().st_size > 1_000_000
    assert tiny_vlm.mmproj_gguf.stat().st_size > 10_000
    assert tiny_vlm.llamacpp_args() == [
        "--model",
        str(tiny_vlm.model_gguf),
        "--mmproj",
        str(tiny_vlm.mmproj_gguf),
    ]


def test_the_gguf_pair_describes_a_qwen2_vl(tiny_vlm: TinyVLM) -> None:
    text = read_metadata(
        tiny_vlm.model_gguf,
        {
            "general.architecture",
            "qwen2vl.rope.dimension_sections",
            "tokenizer.ggml.pre",
            "tokenizer.chat_template",
        },
    )
    assert text["general.architecture"] == b"qwen2vl"
    assert text["qwen2vl.rope.dimension_sections"] == [2, 3, 3, 0]
    assert text["tokenizer.ggml.pre"] == b"qwen2"  # the converter recognised the pre-tokenizer
    assert b"<|vision_start|><|image_pad|><|vision_end|>" in text["tokenizer.chat_template"]
    keys = {"clip.projector_type", "clip.has_vision_encoder"}
    projector = read_metadata(tiny_vlm.mmproj_gguf, keys)
    assert projector == {"clip.projector_type": b"qwen2vl_merger", "clip.has_vision_encoder": True}


def test_metadata_reader_agrees_with_the_gguf_package(tiny_vlm: TinyVLM) -> None:
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(tiny_vlm.mmproj_gguf)
    expected: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        value = field.contents()
        expected[name] = value.encode() if isinstance(value, str) else value
    found = read_metadata(tiny_vlm.mmproj_gguf, expected.keys())
    for name, value in expected.items():
        got = found[name]
        floats = value if isinstance(value, list) else [value]
        if floats and isinstance(floats[0], float):
            np.testing.assert_allclose(got, value, rtol=1e-6)
        else:
            assert got == value, name


def test_the_hugging_face_copy_runs_an_image(tiny_vlm: TinyVLM) -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm.hf_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm.hf_dir, local_files_only=True)
    images = AutoImageProcessor.from_pretrained(tiny_vlm.hf_dir, local_files_only=True)
    pixels = images(images=[noise_image(80, 60)], return_tensors="pt")
    n_image = int(pixels["image_grid_thw"].prod()) // 4
    assert n_image == 12  # 80x60 is scaled up to 112x84 (at least 8 tokens), 8x6 merged 2x2
    prefix = tokenizer.encode("<|im_start|>user\n")
    ids = [*prefix, VISION_START, *[IMAGE_PAD] * n_image, VISION_END, *tokenizer.encode("Hi")]
    types = [1 if t == IMAGE_PAD else 0 for t in ids]
    with torch.inference_mode():
        out = model(
            input_ids=torch.tensor([ids]),
            mm_token_type_ids=torch.tensor([types]),
            pixel_values=pixels["pixel_values"],
            image_grid_thw=pixels["image_grid_thw"],
        )
    assert out.logits.shape == (1, len(ids), 151936)
    assert torch.isfinite(out.logits).all()


def test_building_is_deterministic(tiny_vlm: TinyVLM, tmp_path: Path, pampero_home: Path) -> None:
    from pampero.assets import ensure_default_model

    builder.build_hf(tmp_path / "again", vocab_gguf=ensure_default_model(pampero_home))
    for name in ("model.safetensors", "tokenizer.json", "config.json", "preprocessor_config.json"):
        assert _digest(tmp_path / "again" / name) == _digest(tiny_vlm.hf_dir / name), name


def test_the_command_prints_the_serve_arguments_last(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built: list[Path] = []

    def fake_build(out_dir: Path, *, home: Path, report: Any = None, seed: int = 0) -> TinyVLM:
        built.append(out_dir)
        return TinyVLM(out_dir)

    monkeypatch.setattr(builder, "build_tiny_vlm", fake_build)
    assert cli.main(["dev", "tiny-vlm", str(tmp_path / "out"), "--home", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    out = (tmp_path / "out").resolve()
    assert built == [out]
    assert lines[-1] == f"--model {out}/gguf/model.gguf --mmproj {out}/gguf/mmproj.gguf"
    assert lines[-2].endswith(f"--model tiny-vlm={out}/hf --engine transformers")


def test_the_serve_flags_reach_the_model_settings() -> None:
    values = vars(
        cli.build_parser().parse_args(
            [
                "serve",
                "--model",
                "a.gguf",
                "--mmproj",
                "mm.gguf",
                "--model",
                "t=/m/hf",
                "--engine",
                "transformers",
            ]
        )
    )
    values.pop("command")
    first, second = cli.load_settings(values).models
    assert (first.id, first.path, first.mmproj) == ("a", "a.gguf", "mm.gguf")
    assert first.engine == "llamacpp"
    assert (second.id, second.path, second.engine) == ("t", "/m/hf", "transformers")


# -- llama.cpp's mtmd loads the GGUF pair --------------------------------------------------------


@dataclass
class Mtmd:
    llama: Any
    mtmd: Any
    model: Any
    context: Any
    vision: Any


@pytest.fixture(scope="module")
def mtmd(tiny_vlm: TinyVLM) -> Iterator[Mtmd]:
    import llama_cpp as llama
    import llama_cpp.mtmd_cpp as mtmd_cpp

    llama.llama_backend_init()
    model = llama.llama_model_load_from_file(
        str(tiny_vlm.model_gguf).encode(), llama.llama_model_default_params()
    )
    assert model
    params = llama.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = 512, 256, 256
    params.n_threads = params.n_threads_batch = 1
    context = llama.llama_init_from_model(model, params)
    vision_params = mtmd_cpp.mtmd_context_params_default()
    vision_params.use_gpu, vision_params.n_threads = False, 1
    vision_params.print_timings, vision_params.warmup = False, False
    vision = mtmd_cpp.mtmd_init_from_file(str(tiny_vlm.mmproj_gguf).encode(), model, vision_params)
    assert vision, "mtmd_init_from_file failed"
    yield Mtmd(llama, mtmd_cpp, model, context, vision)
    mtmd_cpp.mtmd_free(vision)
    llama.llama_free(context)
    llama.llama_model_free(model)


def test_mtmd_sees_a_vision_model_with_mrope(mtmd: Mtmd) -> None:
    assert mtmd.mtmd.mtmd_support_vision(mtmd.vision)
    assert not mtmd.mtmd.mtmd_support_audio(mtmd.vision)
    assert mtmd.mtmd.mtmd_decode_use_mrope(mtmd.vision)
    marker = mtmd.mtmd.mtmd_get_marker(mtmd.vision)
    assert marker == mtmd.mtmd.mtmd_default_marker() == b"<__media__>"


def test_mtmd_tokenizes_and_decodes_an_image_prompt(mtmd: Mtmd) -> None:
    m, llama = mtmd.mtmd, mtmd.llama
    pixels = np.asarray(noise_image(80, 60))
    data = (ctypes.c_uint8 * pixels.nbytes).from_buffer_copy(pixels.tobytes())
    bitmap = m.mtmd_bitmap_init(80, 60, data)
    chunks = m.mtmd_input_chunks_init()
    text = m.mtmd_input_text(
        text=PROMPT.encode(), text_len=len(PROMPT.encode()), add_special=True, parse_special=True
    )
    try:
        bitmaps = (m.mtmd_bitmap_p_ctypes * 1)(bitmap)
        assert m.mtmd_tokenize(mtmd.vision, chunks, ctypes.byref(text), bitmaps, 1) == 0
        kinds = [
            m.mtmd_input_chunk_get_type(m.mtmd_input_chunks_get(chunks, i))
            for i in range(m.mtmd_input_chunks_size(chunks))
        ]
        assert kinds == [
            m.MTMD_INPUT_CHUNK_TYPE_TEXT,
            m.MTMD_INPUT_CHUNK_TYPE_IMAGE,
            m.MTMD_INPUT_CHUNK_TYPE_TEXT,
        ]
        before = _text_tokens(m, m.mtmd_input_chunks_get(chunks, 0))
        after = _text_tokens(m, m.mtmd_input_chunks_get(chunks, 2))
        assert before[-1] == VISION_START and after[0] == VISION_END  # mtmd wraps the image
        image = m.mtmd_input_chunks_get(chunks, 1)
        # The same 12 tokens as the Hugging Face copy's processor, in 4 M-RoPE positions.
        assert m.mtmd_input_chunk_get_n_tokens(image) == 12
        assert m.mtmd_input_chunk_get_n_pos(image) == 4
        n_tokens = len(before) + 12 + len(after)
        assert m.mtmd_helper_get_n_tokens(chunks) == n_tokens
        assert m.mtmd_helper_get_n_pos(chunks) == n_tokens - 12 + 4
        new_n_past = llama.llama_pos(0)
        status = m.mtmd_helper_eval_chunks(
            mtmd.vision, mtmd.context, chunks, 0, 0, 256, True, ctypes.byref(new_n_past)
        )
        assert status == 0
        assert new_n_past.value == n_tokens - 12 + 4
        n_vocab = llama.llama_vocab_n_tokens(llama.llama_model_get_vocab(mtmd.model))
        logits = np.ctypeslib.as_array(llama.llama_get_logits_ith(mtmd.context, -1), (n_vocab,))
        assert np.isfinite(logits).all()
    finally:
        llama.llama_memory_seq_rm(llama.llama_get_memory(mtmd.context), -1, -1, -1)
        m.mtmd_input_chunks_free(chunks)
        m.mtmd_bitmap_free(bitmap)


def _text_tokens(m: Any, chunk: Any) -> list[int]:
    count = ctypes.c_size_t()
    pointer = m.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
    return [int(pointer[i]) for i in range(count.value)]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
