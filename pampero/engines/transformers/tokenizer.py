"""A Hugging Face tokenizer as ``pampero.inference.Tokenizer``.

Every token's raw bytes are read once at load (``pampero.engines.pieces``), as the llama.cpp
tokenizer does, so detokenizing on the hot path is a list lookup and multi-byte characters split
across tokens come out whole (through ``TextAssembler``'s incremental UTF-8 decoder). The bytes
follow the tokenizer's own convention: byte-level BPE (GPT-2, Qwen, Llama 3) maps each character
back to a byte; SentencePiece (Llama 2, Mistral, Gemma) turns ``▁`` into a space and ``<0xNN>``
into the byte NN; added tokens are their own text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from pampero.engines.pieces import PieceTableTokenizer

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_FIM_NAMES = (
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder
    ("<PRE>", "<SUF>", "<MID>"),  # CodeLlama
)


class HFTokenizer(PieceTableTokenizer):
    """Implements ``pampero.inference.Tokenizer`` over a transformers tokenizer.

    ``vocab_size`` is the model's logits width, which may exceed the tokenizer's length (padding
    rows); ids without a token have empty bytes. ``eog_ids`` are the model's end-of-generation
    ids (from its generation config) on top of the tokenizer's EOS.
    """

    def __init__(self, tokenizer: Any, *, vocab_size: int, eog_ids: Iterable[int] = ()) -> None:
        self.hf = tokenizer
        decoder = tokenizer.added_tokens_decoder
        super().__init__(
            _pieces(tokenizer, max(vocab_size, len(tokenizer))),
            frozenset(
                [i for i, added in decoder.items() if getattr(added, "special", False)]
                + [i for i in tokenizer.all_special_ids if i is not None]
            ),
        )
        eos = tokenizer.eos_token_id
        self.eog_token_ids = frozenset(
            i for i in [*eog_ids, *([eos] if eos is not None else [])] if 0 <= i < self.vocab_size
        )
        bos = tokenizer.bos_token_id
        self.bos_token_id: int | None = bos
        self.bos_text: str | None = tokenizer.bos_token
        self.eos_text: str | None = tokenizer.eos_token
        self.fim_token_ids = _fim_ids(tokenizer)

    def encode(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[int]:
        # split_special_tokens keeps control tokens as text; user-defined added tokens (Qwen's
        # <tool_call>) still match, as with llama.cpp's parse_special=False.
        encoded = self.hf(
            text, add_special_tokens=add_special, split_special_tokens=not parse_special
        )
        return list(encoded["input_ids"])


def _pieces(tokenizer: Any, size: int) -> list[bytes]:
    byte_level = _decoder_kind(tokenizer) == "ByteLevel"
    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    byte_of = _unicode_to_byte()
    pieces: list[bytes] = []
    for i in range(size):
        token = by_id.get(i)
        if token is None:
            pieces.append(b"")
        elif i in added:
            pieces.append(added[i].content.encode("utf-8"))
        elif byte_level:
            try:
                pieces.append(bytes(byte_of[ch] for ch in token))
            except KeyError:  # not a byte-level symbol after all: take the text
                pieces.append(token.encode("utf-8"))
        elif match := _BYTE_TOKEN.fullmatch(token):
            pieces.append(bytes([int(match.group(1), 16)]))
        else:
            pieces.append(token.replace("▁", " ").encode("utf-8"))
    return pieces


def _decoder_kind(tokenizer: Any) -> str | None:
    """The type of the fast tokenizer's decoder (``ByteLevel``, ``Metaspace``, ``Sequence``...),
    looking inside a ``Sequence`` for a ``ByteLevel`` step."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    steps = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    kinds = [step.get("type") for step in steps]
    return "ByteLevel" if "ByteLevel" in kinds else (kinds[0] if kinds else None)


@cache
def _unicode_to_byte() -> dict[str, int]:
    """The inverse of GPT-2's ``bytes_to_unicode``: printable stand-ins back to bytes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


def _fim_ids(tokenizer: Any) -> tuple[int, int, int] | None:
    vocab = tokenizer.get_vocab()
    for names in _FIM_NAMES:
        if all(name in vocab for name in names):
            prefix, suffix, middle = (int(vocab[name]) for name in names)
            return prefix, suffix, middle
    return None
