"""llama.cpp as a batch runner: one context, many sequences, one ``llama_decode`` per step.

The scheduler hands over a flat list of (token, position, sequence, wants-logits) rows; the runner
writes them into a ``llama_batch`` whose arrays are numpy buffers (no per-token ctypes calls),
decodes, and returns the logits of the rows that asked for them as one float32 matrix.

Each sequence has a KV buffer of its own by default (a llama.cpp stream, as llama-server
``-np N`` runs): a sequence's attention reads only its own cells, and llama.cpp reuses the
compute graph while the same sequences decode in the same order. Copying a prefix between
sequences then goes through host memory (``seq_save``/``seq_load``, a cost of the prefix's
length). With ``kv_unified`` all sequences share one buffer: copying a prefix is a metadata
update, but every sequence's attention spans every sequence's cells.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as L
import numpy as np
import numpy.typing as npt

from pampero.engines.llamacpp.tokenizer import LlamaTokenizer
from pampero.engines.llamacpp.vision import ImageChunk, VisionProjector
from pampero.errors import EngineError

log = logging.getLogger(__name__)

_GGML_LOG_WARN, _GGML_LOG_ERROR = 3, 4  # enum ggml_log_level


@dataclass(frozen=True)
class RunnerConfig:
    path: Path
    n_ctx_seq: int  # context per sequence (0: the model's training context)
    max_seqs: int
    n_batch: int
    threads: int
    threads_batch: int
    kv_unified: bool = False
    mmproj: Path | None = None  # a vision projector (llama.cpp mtmd) for image input
    # The prefix cache's sequence ids (after the max_seqs slots) and its extra KV cells.
    cache_seqs: int = 0
    cache_cells: int = 0


def _silence_llama_logs() -> object:
    # llama.cpp prints every load detail to stderr; keep warnings and errors only.
    def sink(level: int, text: bytes, _user: object) -> None:
        if level in (_GGML_LOG_WARN, _GGML_LOG_ERROR) and text:
            log.warning("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

    callback = L.llama_log_callback(sink)
    L.llama_log_set(callback, None)
    return callback


_LOG_CALLBACK: list[object] = []
# The flags are 0 or 1, so their sum counts the output rows; a ufunc's reduce is one C call,
# where np.count_nonzero passes through two Python frames (this runs every step).
_flag_sum = np.add.reduce

# llama_get_logits returning the bare address: llama-cpp-python's binding returns a float
# pointer, and casting that to an address costs a Python-level ctypes call per step.
_get_logits_address = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(
    ("llama_get_logits", L.llama_cpp._lib)
)


class LlamaRunner:
    """Owns a llama.cpp model, its context and its batch buffers. Not thread-safe: the
    scheduler thread is its only user after construction."""

    def __init__(self, config: RunnerConfig) -> None:
        if not _LOG_CALLBACK:
            _LOG_CALLBACK.append(_silence_llama_logs())
            L.llama_backend_init()
        if not config.path.is_file():
            raise EngineError(f"model file {config.path} does not exist")
        self.config = config
        self._model = L.llama_model_load_from_file(
            str(config.path).encode(), L.llama_model_default_params()
        )
        if not self._model:
            raise EngineError(f"llama.cpp could not load {config.path}")
        self.n_ctx_train = int(L.llama_model_n_ctx_train(self._model))
        self.n_ctx_seq = min(config.n_ctx_seq or self.n_ctx_train, self.n_ctx_train)
        self._ctx = self._new_context(config)
        self._memory = L.llama_get_memory(self._ctx)
        self.tokenizer = LlamaTokenizer(L.llama_model_get_vocab(self._model))
        self.n_vocab = self.tokenizer.vocab_size
        self.chat_template = self._chat_template()
        self.n_batch = config.n_batch
        self._alloc_batch(config.n_batch)
        self.warm_up()
        self.vision: VisionProjector | None = None
        if config.mmproj is not None:
            self.vision = VisionProjector(
                config.mmproj,
                self._model,
                self._ctx,
                threads=config.threads_batch,
                n_batch=config.n_batch,
            )

    @property
    def supports_images(self) -> bool:
        return self.vision is not None

    def expand_image(self, image: Any) -> ImageChunk:
        """An image's chunk and wrapping tokens (see ``pampero.engines.llamacpp.vision``)."""
        if self.vision is None:
            raise EngineError("this model has no vision projector")
        return self.vision.expand(image)

    def evaluate_image(self, image: ImageChunk, seq_id: int, position: int) -> None:
        if self.vision is None:
            raise EngineError("this model has no vision projector")
        self.vision.evaluate(image, seq_id, position)

    def _new_context(self, config: RunnerConfig) -> object:
        params = L.llama_context_default_params()
        # Unified or split, the total is one full context per sequence slot, so a sequence
        # never runs out of KV before it reaches n_ctx_seq and no preemption is needed.
        params.n_ctx = self.n_ctx_seq * config.max_seqs + config.cache_cells
        if not config.kv_unified:  # llama.cpp gives each sequence n_ctx / n_seq_max cells
            params.n_ctx = self.n_ctx_seq * (config.max_seqs + config.cache_seqs)
        params.n_seq_max = config.max_seqs + config.cache_seqs
        params.n_batch = config.n_batch
        params.n_ubatch = config.n_batch
        params.n_threads = config.threads
        params.n_threads_batch = config.threads_batch
        params.kv_unified = config.kv_unified
        params.no_perf = True
        ctx = L.llama_init_from_model(self._model, params)
        if not ctx:
            raise EngineError("llama.cpp could not create a context (out of memory?)")
        return ctx

    def _chat_template(self) -> str | None:
        raw = L.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8") if raw else None

    def _alloc_batch(self, n: int) -> None:
        self._tokens = np.zeros(n, dtype=np.int32)
        self._pos = np.zeros(n, dtype=np.int32)
        self._n_seq_id = np.ones(n, dtype=np.int32)
        self._seq_storage = np.zeros(n, dtype=np.int32)
        self._logits_flag = np.zeros(n, dtype=np.int8)
        seq_ptr_type = ctypes.POINTER(L.llama_seq_id)
        base = self._seq_storage.ctypes.data
        self._seq_ptrs = (seq_ptr_type * n)(
            *[ctypes.cast(base + 4 * i, seq_ptr_type) for i in range(n)]
        )
        batch: Any = L.llama_batch()  # fields hold pointers into the numpy buffers above
        batch.token = self._tokens.ctypes.data_as(ctypes.POINTER(L.llama_token))
        batch.embd = None
        batch.pos = self._pos.ctypes.data_as(ctypes.POINTER(L.llama_pos))
        batch.n_seq_id = self._n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(seq_ptr_type))
        batch.logits = self._logits_flag.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self._batch = batch
        self._views: dict[tuple[int, int], npt.NDArray[np.float32]] = {}

    def decode(
        self,
        tokens: npt.NDArray[np.int32],
        positions: npt.NDArray[np.int32],
        seq_ids: npt.NDArray[np.int32],
        want_logits: npt.NDArray[np.int8],
    ) -> npt.NDArray[np.float32]:
        """Decode one batch; return the logits rows (in batch order) of rows with want_logits."""
        n = len(tokens)
        if n == 0 or n > self.n_batch:
            raise EngineError(f"batch of {n} tokens does not fit n_batch={self.n_batch}")
        self._tokens[:n] = tokens
        self._pos[:n] = positions
        self._seq_storage[:n] = seq_ids
        self._logits_flag[:n] = want_logits
        self._batch.n_tokens = n
        status = L.llama_decode(self._ctx, self._batch)
        if status != 0:
            raise EngineError(f"llama_decode failed with status {status}")
        n_out = int(_flag_sum(want_logits, dtype=np.intp))
        if n_out == 0:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        return self._logits(n_out)

    def _logits(self, n_out: int) -> npt.NDArray[np.float32]:
        """The first ``n_out`` rows of llama.cpp's logits buffer, as a numpy view (no copy).

        The view is made once per buffer address and row count: ``np.ctypeslib.as_array``
        builds a ctypes array type on every call, which cost more than a sampled token's
        numpy work. llama.cpp moves the buffer only when it grows, and then the address
        changes, so a stale view is never reused."""
        address = _get_logits_address(self._ctx) or 0
        view = self._views.get((address, n_out))
        if view is None:
            if len(self._views) > 64:  # the buffer moved (it grew): forget the old views
                self._views.clear()
            buffer = (ctypes.c_float * (n_out * self.n_vocab)).from_address(address)
            view = np.frombuffer(memoryview(buffer), dtype=np.float32).reshape(n_out, self.n_vocab)
            self._views[(address, n_out)] = view
        return view

    def warm_up(self) -> None:
        """Run the shapes the scheduler will run, then forget them, as llama.cpp's own tools
        do before serving. The first decodes after a load pay for faulting in the mapped
        weights, growing the output buffer and the thread team's first start; without this
        the first requests after a start decode several times slower than the rest."""
        max_seqs = self.config.max_seqs
        prompt = min(self.n_batch, 8)
        tokens = np.full(prompt, self.tokenizer.bos_token_id or 0, dtype=np.int32)
        flags = np.zeros(prompt, dtype=np.int8)
        flags[-1] = 1
        self.decode(tokens, np.arange(prompt, dtype=np.int32), np.zeros(prompt, np.int32), flags)
        width = min(max_seqs, self.n_batch)
        seqs = np.arange(width, dtype=np.int32)
        # One token per sequence, each with logits: the shape of a decode step.
        positions = np.where(seqs == 0, prompt, 0).astype(np.int32)
        step = np.full(width, tokens[0], dtype=np.int32)
        self.decode(step, positions, seqs, np.ones(width, dtype=np.int8))
        L.llama_memory_clear(self._memory, True)

    def seq_remove(self, seq_id: int, start: int = 0, end: int = -1) -> None:
        """Drop positions [start, end) of a sequence from the KV memory (end -1: to the end)."""
        L.llama_memory_seq_rm(self._memory, seq_id, start, end)

    def seq_copy(self, src: int, dst: int, end: int = -1) -> None:
        """Make ``dst`` (emptied first) hold ``src``'s KV entries for positions [0, end).

        In a unified KV buffer that tags the cells with ``dst``. Between split buffers (one
        stream per sequence) llama.cpp's own ``seq_cp`` copies the whole stream, a full
        context, on the next decode; this copies ``src``'s cells through host memory at once
        instead (1 ms for 100 tokens of the default model, 6 ms for 1000, against 8 ms for a
        4096-token stream), then drops ``dst``'s positions from ``end`` on."""
        if self.config.kv_unified:
            L.llama_memory_seq_cp(self._memory, src, dst, 0, end)
        else:
            self.seq_load(self.seq_save(src), dst)
            if end >= 0:
                L.llama_memory_seq_rm(self._memory, dst, end, -1)

    def seq_save(self, seq_id: int) -> npt.NDArray[np.uint8]:
        """A sequence's KV cells (positions, K and V rows of every layer), serialised into host
        memory: about 12 KB per token for the default model."""
        size = int(L.llama_state_seq_get_size(self._ctx, seq_id))
        data = np.empty(size, dtype=np.uint8)
        pointer = data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        written = int(L.llama_state_seq_get_data(self._ctx, pointer, size, seq_id))
        if written != size:
            raise EngineError(f"llama.cpp saved {written} of {size} bytes of sequence {seq_id}")
        return data

    def seq_load(self, data: npt.NDArray[np.uint8], dst: int) -> None:
        """Replace sequence ``dst``'s KV with what ``seq_save`` returned (of any sequence)."""
        pointer = data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        if int(L.llama_state_seq_set_data(self._ctx, pointer, data.size, dst)) == 0:
            L.llama_memory_seq_rm(self._memory, dst, -1, -1)
            raise EngineError(f"llama.cpp could not restore {data.size} bytes into sequence {dst}")

    def close(self) -> None:
        if self.vision is not None:
            self.vision.close()
            self.vision = None
        if self._ctx:
            L.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            L.llama_model_free(self._model)
            self._model = None
