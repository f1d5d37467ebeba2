"""A GGUF model's vocabulary, through llama.cpp's tokenizer.

Token pieces are read once at load into a bytes table (``pampero.engines.pieces``), so
detokenizing a generated token on the hot path is a list lookup, not a foreign call.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp as L

from pampero.engines.pieces import PieceTableTokenizer
from pampero.errors import EngineError

_CONTROL = L.LLAMA_TOKEN_ATTR_CONTROL


class LlamaTokenizer(PieceTableTokenizer):
    """Implements ``pampero.inference.Tokenizer`` over a loaded ``llama_vocab``."""

    def __init__(self, vocab: object) -> None:
        self._vocab = vocab
        size = int(L.llama_vocab_n_tokens(vocab))
        super().__init__(
            _read_pieces(vocab, size),
            frozenset(i for i in range(size) if L.llama_vocab_get_attr(vocab, i) & _CONTROL),
        )
        self.eog_token_ids = frozenset(i for i in range(size) if L.llama_vocab_is_eog(vocab, i))
        bos = int(L.llama_vocab_bos(vocab))
        eos = int(L.llama_vocab_eos(vocab))
        self.bos_token_id = bos if bos >= 0 else None
        self.add_bos = bool(L.llama_vocab_get_add_bos(vocab))
        self.bos_text = self._text(bos)
        self.eos_text = self._text(eos)
        fim = (
            L.llama_vocab_fim_pre(vocab),
            L.llama_vocab_fim_suf(vocab),
            L.llama_vocab_fim_mid(vocab),
        )
        self.fim_token_ids = fim if all(t >= 0 for t in fim) else None

    def _text(self, token_id: int) -> str | None:
        if 0 <= token_id < self.vocab_size:
            return self.pieces[token_id].decode("utf-8", "replace")
        return None

    def encode(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buf = (L.llama_token * capacity)()
            n = L.llama_tokenize(
                self._vocab, data, len(data), buf, capacity, add_special, parse_special
            )
            if n >= 0:
                return list(buf[:n])
            capacity = -n


def _read_pieces(vocab: object, n_vocab: int) -> list[bytes]:
    size = 256
    buf = ctypes.create_string_buffer(size)
    pieces: list[bytes] = []
    for token in range(n_vocab):
        n = L.llama_token_to_piece(vocab, token, buf, size, 0, True)
        if n < 0:
            bigger = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(vocab, token, bigger, -n, 0, True)
            pieces.append(bigger.raw[:n])
        else:
            pieces.append(buf.raw[:n])
    return pieces


class _VocabOnlyTokenizer(LlamaTokenizer):
    """A ``LlamaTokenizer`` that owns the vocab-only model it reads from (freed with it)."""

    def __init__(self, model: object) -> None:
        self._model = model
        super().__init__(L.llama_model_get_vocab(model))

    def close(self) -> None:
        if self._model:
            L.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()


def load_vocab_only(path: Path) -> LlamaTokenizer:
    """The tokenizer of the GGUF at ``path``, loaded without its weights (well under a second).

    For processes that need the vocabulary but never run the model: constraint compilers,
    tests, benchmarks.
    """
    # Lazily: the runner imports this module.
    from pampero.engines.llamacpp.runner import _LOG_CALLBACK, _silence_llama_logs

    if not _LOG_CALLBACK:
        _LOG_CALLBACK.append(_silence_llama_logs())
        L.llama_backend_init()
    if not path.is_file():
        raise EngineError(f"model file {path} does not exist")
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise EngineError(f"llama.cpp could not read the vocabulary of {path}")
    return _VocabOnlyTokenizer(model)
