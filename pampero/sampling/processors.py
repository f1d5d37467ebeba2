"""Named logits processors a request may ask for in ``logits_processors``.

Clients name processors; they never send code. Built-ins register the way a plugin does
(entry point group ``pampero.logits_processors``, value ``module:factory``); a factory takes the
model's tokenizer and returns a ``LogitsProcessor`` for one sequence.

Built-ins:
- ``no_repeat_ngram_3``: never complete a 3-token sequence that already appears in the output.
- ``suppress_special_tokens``: never emit control tokens other than the end-of-generation ones.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from pampero.inference import LogitsProcessor, Tokenizer
from pampero.registry import Registry

ProcessorFactory = Callable[[Tokenizer], LogitsProcessor]

_PROCESSORS: Registry[ProcessorFactory] = Registry(
    "logits processor",
    "pampero.logits_processors",
    {
        "no_repeat_ngram_3": "pampero.sampling.processors:no_repeat_ngram_3",
        "suppress_special_tokens": "pampero.sampling.processors:suppress_special_tokens",
    },
)


def available() -> dict[str, str]:
    return _PROCESSORS.available()


def build(names: Sequence[str], tokenizer: Tokenizer) -> list[LogitsProcessor]:
    """One fresh processor per name, for one sequence. Unknown names are a 400."""
    return [
        _PROCESSORS.load(name, param=f"logits_processors[{i}]")(tokenizer)
        for i, name in enumerate(names)
    ]


class _NoRepeatNgram:
    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, output_ids: Sequence[int], logits: npt.NDArray[np.float32]) -> None:
        n = self.n
        if len(output_ids) < n:
            return
        prefix = tuple(output_ids[-(n - 1) :])
        banned = [
            output_ids[i + n - 1]
            for i in range(len(output_ids) - n + 1)
            if tuple(output_ids[i : i + n - 1]) == prefix
        ]
        if banned:
            logits[banned] = -np.inf


def no_repeat_ngram_3(_tokenizer: Tokenizer) -> LogitsProcessor:
    return _NoRepeatNgram(3)


class _Suppress:
    def __init__(self, ids: npt.NDArray[np.int64]) -> None:
        self.ids = ids

    def __call__(self, output_ids: Sequence[int], logits: npt.NDArray[np.float32]) -> None:
        logits[self.ids] = -np.inf


_SPECIAL_IDS: weakref.WeakKeyDictionary[Tokenizer, npt.NDArray[np.int64]] = (
    weakref.WeakKeyDictionary()
)


def suppress_special_tokens(tokenizer: Tokenizer) -> LogitsProcessor:
    ids = _SPECIAL_IDS.get(tokenizer)
    if ids is None:  # scanning the vocabulary takes tens of ms: once per tokenizer
        ids = np.asarray(
            [
                i
                for i in range(tokenizer.vocab_size)
                if tokenizer.is_special(i) and i not in tokenizer.eog_token_ids
            ],
            dtype=np.int64,
        )
        _SPECIAL_IDS[tokenizer] = ids
    return _Suppress(ids)
