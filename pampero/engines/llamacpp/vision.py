"""Images for GGUF vision models through llama.cpp's ``mtmd`` (the model's ``mmproj`` file).

``expand`` turns one decoded image into what the KV buffer will hold: the text tokens the model
wraps an image in (Qwen2-VL: ``<|vision_start|>`` ... ``<|vision_end|>``) around one image chunk
of ``n_tokens`` embeddings that consume ``n_pos`` positions (fewer than ``n_tokens`` with
M-RoPE). ``evaluate`` encodes the image with the vision tower and decodes its embeddings into
one sequence's KV; text before and after goes through the scheduler's ordinary batches.
"""

from __future__ import annotations

import ctypes
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as L
import llama_cpp.mtmd_cpp as M
import numpy as np

from pampero.errors import EngineError, InvalidRequestError

_TEXT_CHUNK = 0


@dataclass
class ImageChunk:
    """One image ready to evaluate: the owning chunk list keeps the native chunk alive."""

    chunks: Any  # mtmd_input_chunks_p (freed by ``release``)
    chunk: Any  # mtmd_input_chunk_p inside ``chunks``
    n_tokens: int
    n_pos: int
    before: list[int]  # text tokens mtmd puts in front of the image
    after: list[int]  # and behind it

    def release(self) -> None:
        if self.chunks is not None:
            M.mtmd_input_chunks_free(self.chunks)
            self.chunks = None


class VisionProjector:
    """An ``mtmd`` context over a loaded llama.cpp model. Used by the engine thread only."""

    def __init__(self, mmproj: Path, model: Any, context: Any, *, threads: int, n_batch: int):
        if not mmproj.is_file():
            raise EngineError(f"mmproj file {mmproj} does not exist")
        params = M.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = threads
        params.warmup = False
        params.print_timings = False
        self._ctx = M.mtmd_init_from_file(str(mmproj).encode(), model, params)
        if not self._ctx:
            raise EngineError(f"llama.cpp could not load the vision projector {mmproj}")
        if not M.mtmd_support_vision(self._ctx):
            M.mtmd_free(self._ctx)
            raise EngineError(f"{mmproj} has no vision encoder")
        self._llama = context
        self._n_batch = n_batch
        self._marker = M.mtmd_default_marker()

    def expand(self, image: Any) -> ImageChunk:
        """Tokenize one image (an RGB PIL image) into its chunk and wrapping tokens."""
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        height, width = rgb.shape[:2]
        data = rgb.tobytes()
        bitmap = M.mtmd_bitmap_init(
            width, height, (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        )
        M.mtmd_bitmap_set_id(bitmap, b"sha256:" + hashlib.sha256(data).hexdigest().encode())
        chunks = M.mtmd_input_chunks_init()
        try:
            text = M.mtmd_input_text(
                text=self._marker, text_len=len(self._marker), add_special=False, parse_special=True
            )
            status = M.mtmd_tokenize(
                self._ctx, chunks, ctypes.byref(text), (M.mtmd_bitmap_p_ctypes * 1)(bitmap), 1
            )
            if status != 0:
                raise InvalidRequestError(
                    f"the vision model could not read a {width}x{height} image", param="messages"
                )
            return self._image_chunk(chunks)
        except BaseException:
            M.mtmd_input_chunks_free(chunks)
            raise
        finally:
            M.mtmd_bitmap_free(bitmap)

    def _image_chunk(self, chunks: Any) -> ImageChunk:
        before: list[int] = []
        after: list[int] = []
        image = None
        for i in range(M.mtmd_input_chunks_size(chunks)):
            chunk = M.mtmd_input_chunks_get(chunks, i)
            if M.mtmd_input_chunk_get_type(chunk) == _TEXT_CHUNK:
                count = ctypes.c_size_t()
                tokens = M.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                (after if image is not None else before).extend(
                    tokens[j] for j in range(count.value)
                )
            elif image is None:
                image = chunk
        if image is None:
            raise EngineError("mtmd produced no image chunk for an image")
        return ImageChunk(
            chunks=chunks,
            chunk=image,
            n_tokens=int(M.mtmd_input_chunk_get_n_tokens(image)),
            n_pos=int(M.mtmd_input_chunk_get_n_pos(image)),
            before=before,
            after=after,
        )

    def evaluate(self, image: ImageChunk, seq_id: int, position: int) -> None:
        """Encode ``image`` and decode its embeddings into ``seq_id`` from ``position`` on."""
        new_position = L.llama_pos(position)
        status = M.mtmd_helper_eval_chunk_single(
            self._ctx,
            self._llama,
            image.chunk,
            position,
            seq_id,
            self._n_batch,
            False,
            ctypes.byref(new_position),
        )
        if status != 0:
            raise EngineError(f"the vision encoder failed with status {status}")

    def close(self) -> None:
        if self._ctx:
            M.mtmd_free(self._ctx)
            self._ctx = None
