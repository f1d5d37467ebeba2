"""lm-format-enforcer: JSON Schema, any JSON object, regex (interegular's dialect) and choice; no
grammars, no whitespace pattern.

lm-format-enforcer works character by character in Python: its per-vocabulary prefix tree takes
~1.5 s to build (once per process) and masks cost milliseconds. Its parsers are plain Python
objects built lazily as text is generated, so there is no compiled artifact worth sending: the
worker builds the parser (which checks the spec) and its first masks (the mask probe, which
proves them within the deadline and the per-token budget), and the serving process builds the
parser and first mask again. One ``TokenEnforcer``
per compiled spec caches masks by parser state and is shared by that spec's sequences; each
matcher keeps its own parser state.

Only tokens whose bytes are whole UTF-8 text without control characters take part:
lm-format-enforcer reasons about characters, a token holding part of a character cannot be
checked on its own, and it lets newlines, tabs and other control characters into JSON strings
raw. So with this backend no output contains a control character.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pampero.constraints.backends._common import (
    CORE_KEYWORDS,
    BoolMask,
    MaskedMatcher,
    PerVocabulary,
    compile_refusal,
    library,
    refuse_unenforced,
    unenforced_features,
)
from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.regex_features import FLAG_IGNORECASE
from pampero.constraints.vocab import TokenMasks, text_pieces

# What lm-format-enforcer's JSON parser enforces; a schema using anything else is refused
# rather than silently loosened.
ENFORCED = CORE_KEYWORDS
# Regex features beyond the regular core that lm-format-enforcer (interegular) enforces. It
# parses a lookahead and then does not enforce it (and builds an automaton whose masks take
# minutes), and reads a possessive ``a++`` as ``(a+)+``: those are refused before it sees them.
REGEX = frozenset({FLAG_IGNORECASE})

# lm-format-enforcer lets tokens holding control characters into JSON strings raw (invalid
# JSON), so such tokens (newlines and tabs included) are left out.
_CONTROL = re.compile(rb"[\x00-\x1f]")


@dataclass(frozen=True, eq=False)
class _Vocab:
    data: Any  # lmformatenforcer.TokenEnforcerTokenizerData
    masks: TokenMasks


@dataclass(frozen=True, eq=False)
class _Compiled:
    enforcer: Any  # lmformatenforcer.TokenEnforcer, shared by the spec's sequences
    masks: TokenMasks


def _adapt(vocabulary: ConstraintVocabulary) -> _Vocab:
    lmfe = library("lmformatenforcer")
    regular: list[tuple[int, str, bool]] = []
    for i, piece in enumerate(text_pieces(vocabulary)):
        if piece and not _CONTROL.search(piece):
            try:
                # Every token starts a new "word": pieces are exact bytes, nothing merges.
                regular.append((i, piece.decode("utf-8"), True))
            except UnicodeDecodeError:
                continue
    pieces = vocabulary.pieces

    def decode(ids: list[int]) -> str:
        return b"".join(pieces[i] for i in ids).decode("utf-8", "ignore")

    data = lmfe.TokenEnforcerTokenizerData(
        regular, decode, sorted(vocabulary.eos_ids), False, vocabulary.size
    )
    return _Vocab(data, TokenMasks.of(vocabulary))


class FormatEnforcerBackend:
    """Implements ``ConstraintBackend`` with lm-format-enforcer's character-level parsers."""

    name = "lm-format-enforcer"

    def __init__(self) -> None:
        self._vocab = PerVocabulary(_adapt)

    def unsupported(self, spec: ConstraintSpec) -> str | None:
        if spec.kind == "grammar":
            return "lm-format-enforcer takes no grammars; use xgrammar or guidance"
        if spec.whitespace_pattern is not None:
            return "lm-format-enforcer takes no whitespace pattern (guidance and outlines do)"
        return unenforced_features(spec, self.name, regex=REGEX, enforced=ENFORCED)

    def prepare(self, vocabulary: ConstraintVocabulary) -> None:
        self._vocab.get(vocabulary)

    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> None:
        lmfe = library("lmformatenforcer")
        refuse_unenforced(spec, self.name, ENFORCED)
        try:
            _PARSERS[spec.kind](lmfe, spec)
        except Exception as exc:  # interegular's and pydantic's errors share no base class
            raise compile_refusal(self.name, spec, exc) from None

    def load(self, artifact: Any, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        lmfe = library("lmformatenforcer")
        state = self._vocab.get(vocabulary)
        refuse_unenforced(spec, self.name, ENFORCED)
        try:
            enforcer = lmfe.TokenEnforcer(state.data, _PARSERS[spec.kind](lmfe, spec))
            _Matcher(_Compiled(enforcer, state.masks))._state()  # the first mask
        except Exception as exc:  # interegular's and pydantic's errors share no base class
            raise compile_refusal(self.name, spec, exc) from None
        return _Compiled(enforcer, state.masks)

    def footprint(self, compiled: Any) -> int:
        return 256 * 1024  # parsers and cached masks grow as text is generated; an estimate

    def matcher(self, compiled: Any) -> _Matcher:
        return _Matcher(compiled)


_PARSERS: dict[str, Callable[[Any, ConstraintSpec], Any]] = {
    "json_schema": lambda lmfe, spec: lmfe.JsonSchemaParser(json.loads(spec.value)),
    "json_object": lambda lmfe, spec: lmfe.JsonSchemaParser({"type": "object"}),
    "regex": lambda lmfe, spec: lmfe.RegexParser(spec.value),
    "choice": lambda lmfe, spec: lmfe.UnionParser([lmfe.StringParser(c) for c in spec.value]),
}


class _Matcher(MaskedMatcher):
    # Uses TokenEnforcer's per-state steps directly (pinned version): its public entry point
    # keys states by the whole token sequence, which grows quadratically with the output.
    def __init__(self, compiled: _Compiled) -> None:
        super().__init__(compiled.masks)
        self._enforcer = compiled.enforcer
        self._parse_state = type(compiled.enforcer).OutputTensorState(
            parser=compiled.enforcer.root_parser
        )
        self._raw = np.zeros(compiled.masks.size, dtype=np.bool_)

    def _raw_allowed(self) -> tuple[BoolMask, bool]:
        state = self._parse_state
        if state.allowed_tokens is None:
            self._enforcer._compute_allowed_tokens((), state)
        raw = self._raw
        raw.fill(False)
        allowed = state.allowed_tokens.allowed_tokens
        if allowed:
            raw[np.fromiter(allowed, dtype=np.intp, count=len(allowed))] = True
        return raw, bool(state.parser.can_end())

    def _advance(self, token_id: int) -> bool:
        self._parse_state = self._enforcer._apply_new_characters(self._parse_state, [token_id])
        return True
