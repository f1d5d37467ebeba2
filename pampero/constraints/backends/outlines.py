"""outlines (outlines-core): JSON Schema (through its JSON-Schema-to-regex translation, with a
whitespace pattern), any JSON object (bounded nesting), regex and choice; no grammars.

outlines-core compiles a regular expression into a token-level automaton (``Index``) over the
whole vocabulary: the expensive step, done in the worker. An ``Index`` pickles (its own binary
form), so it crosses to the serving process as bytes and loads without recompiling; each
sequence walks it with its own ``Guide``. The regex dialect is Rust's ``regex`` crate
(``\\d`` is any Unicode digit, no look-around, no back-references).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pampero.constraints.backends._common import (
    CORE_KEYWORDS,
    BoolMask,
    MaskedMatcher,
    PackedBits,
    PerVocabulary,
    compile_refusal,
    library,
    refuse_unenforced,
    unenforced_features,
)
from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.regex_features import FLAG_IGNORECASE
from pampero.constraints.vocab import TokenMasks, text_pieces

# outlines-core's own translation of {"type": "object"} nests three levels of any-value and
# takes ~12 s over a 150k-token vocabulary; values here nest one level (arrays and objects of
# scalars), which compiles in about a second. Still only JSON objects.
_SCALAR = {"type": ["string", "number", "boolean", "null"]}
_ANY_OBJECT = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [
            _SCALAR,
            {"type": "array", "items": _SCALAR},
            {"type": "object", "additionalProperties": _SCALAR},
        ]
    },
}
_ANY_OBJECT_TEXT = json.dumps(_ANY_OBJECT)
# What outlines-core's JSON-Schema-to-regex translation enforces; a schema using anything else
# (numeric bounds, uniqueItems, not, ...) would be silently loosened, so it is refused.
ENFORCED = CORE_KEYWORDS
# Regex features beyond the regular core that the Rust regex dialect enforces as Python does
# (it refuses anchors, lookaround, backreferences, word boundaries and atomic groups).
REGEX = frozenset({FLAG_IGNORECASE})
_META = frozenset(".^$*+?()[]{}|\\#&-~")


@dataclass(frozen=True, eq=False)
class _Vocab:
    vocabulary: Any  # outlines_core.Vocabulary
    masks: TokenMasks


@dataclass(frozen=True, eq=False)
class _Compiled:
    index: Any  # outlines_core.Index
    masks: TokenMasks
    size_bytes: int


def _adapt(vocabulary: ConstraintVocabulary) -> _Vocab:
    masks = TokenMasks.of(vocabulary)
    ids: dict[bytes, list[int]] = {}
    for i, piece in enumerate(text_pieces(vocabulary)):
        if piece:
            ids.setdefault(piece, []).append(i)
    return _Vocab(library("outlines_core").Vocabulary(masks.primary_eos, ids), masks)


def escape(text: str) -> str:
    """``text`` as a literal in the Rust regex dialect."""
    return "".join("\\" + c if c in _META else c for c in text)


class OutlinesBackend:
    """Implements ``ConstraintBackend`` with outlines-core's ``Index`` and ``Guide``."""

    name = "outlines"

    def __init__(self) -> None:
        self._vocab = PerVocabulary(_adapt)

    def unsupported(self, spec: ConstraintSpec) -> str | None:
        if spec.kind == "grammar":
            return "outlines compiles regular languages only; use xgrammar or guidance"
        return unenforced_features(spec, self.name, regex=REGEX, enforced=ENFORCED)

    def prepare(self, vocabulary: ConstraintVocabulary) -> None:
        self._vocab.get(vocabulary)

    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> bytes:
        oc = library("outlines_core")
        refuse_unenforced(spec, self.name, ENFORCED)
        try:
            regex = _REGEXES[spec.kind](spec)
            index = oc.Index(regex, self._vocab.get(vocabulary).vocabulary)
        except (ValueError, TypeError) as exc:
            raise compile_refusal(self.name, spec, exc) from None
        return pickle.dumps(index)

    def load(self, artifact: Any, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        return _Compiled(pickle.loads(artifact), self._vocab.get(vocabulary).masks, len(artifact))

    def footprint(self, compiled: Any) -> int:
        return int(compiled.size_bytes)  # the serialised automaton: close to its memory

    def matcher(self, compiled: Any) -> _Matcher:
        return _Matcher(compiled)


def _schema_regex(schema: str, spec: ConstraintSpec) -> str:
    build = library("outlines_core.json_schema").build_regex_from_schema
    regex: str = build(schema, spec.whitespace_pattern)
    return regex


_REGEXES: dict[str, Callable[[ConstraintSpec], str]] = {
    "json_schema": lambda spec: _schema_regex(spec.value, spec),
    "json_object": lambda spec: _schema_regex(_ANY_OBJECT_TEXT, spec),
    "regex": lambda spec: str(spec.value),
    "choice": lambda spec: "(" + "|".join(escape(choice) for choice in spec.value) + ")",
}


class _Matcher(MaskedMatcher):
    def __init__(self, compiled: _Compiled) -> None:
        super().__init__(compiled.masks)
        self._guide = library("outlines_core").Guide(compiled.index)
        self._bits = PackedBits(compiled.masks.size)
        self._words = self._bits.words

    def _raw_allowed(self) -> tuple[BoolMask, bool]:
        words = self._words
        self._guide.write_mask_into(words.ctypes.data, words.size, words.itemsize)
        return self._bits.unpack(), bool(self._guide.is_finished())

    def _advance(self, token_id: int) -> bool:
        self._guide.advance(token_id, return_tokens=False)
        return True
