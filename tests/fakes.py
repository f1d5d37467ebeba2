"""Fakes that plug in through pampero's own seams, for tests that need no model."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>")
LLAMA3_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
)
MISTRAL_SPECIALS = (
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[TOOL_CALLS]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
)


class ByteTokenizer:
    """A ``pampero.engines.base.Tokenizer``: one token per UTF-8 byte (ids 0-255) plus control
    tokens (ids from 256). It records every ``encode`` call as ``(text, parse_special)``."""

    def __init__(
        self,
        specials: Iterable[str] = CHATML_SPECIALS,
        *,
        bos: str | None = None,
        eos: str | None = "<|endoftext|>",
        add_eos: bool = False,
    ) -> None:
        self.specials = tuple(dict.fromkeys([*specials, *(t for t in (bos, eos) if t)]))
        self.ids = {text: 256 + i for i, text in enumerate(self.specials)}
        self.vocab_size = 256 + len(self.specials)
        self.bos_text, self.eos_text = bos, eos
        self.bos_token_id = self.ids[bos] if bos else None
        self.eos_token_id = self.ids[eos] if eos else None
        self.eog_token_ids = frozenset([self.eos_token_id] if self.eos_token_id is not None else [])
        self.add_eos = add_eos
        self.fim_token_ids: tuple[int, int, int] | None = None
        longest_first = sorted(self.specials, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(t) for t in longest_first))
        self.calls: list[tuple[str, bool]] = []

    def encode(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[int]:
        self.calls.append((text, parse_special))
        ids: list[int] = []
        if add_special and self.bos_token_id is not None:
            ids.append(self.bos_token_id)
        cursor = 0
        if parse_special:
            for match in self._pattern.finditer(text):
                ids += text[cursor : match.start()].encode()
                ids.append(self.ids[match.group()])
                cursor = match.end()
        ids += text[cursor:].encode()
        if add_special and self.add_eos and self.eos_token_id is not None:
            ids.append(self.eos_token_id)
        return ids

    def decode(self, token_ids: Sequence[int], *, skip_special: bool = True) -> str:
        return b"".join(
            self.token_bytes(t) for t in token_ids if not (skip_special and self.is_special(t))
        ).decode("utf-8", "replace")

    def token_bytes(self, token_id: int) -> bytes:
        if token_id < 256:
            return bytes([token_id])
        return self.specials[token_id - 256].encode()

    def is_special(self, token_id: int) -> bool:
        return token_id >= 256

    def special_texts(self) -> frozenset[str]:
        return frozenset(self.specials)

    def control_texts(self, token_ids: Sequence[int]) -> list[str]:
        """The control tokens among ``token_ids``, as text, in order."""
        return [self.specials[t - 256] for t in token_ids if t >= 256]
