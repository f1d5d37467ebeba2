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

A mask is computed by walking the vocabulary's prefix tree through the parser in Python, which
for some states takes long (a lookahead's automaton took a minute per mask), so every mask is
given ``MASK_CPU_LIMIT`` of CPU time: the parser is wrapped (``_Bounded``) so that past it the
walk stops and the matcher raises ``UnsupportedParameter`` (the sequence then ends with an
error; the compile probe refuses the backend), rather than holding the decode thread.

Only tokens whose bytes are whole UTF-8 text without control characters take part:
lm-format-enforcer reasons about characters, a token holding part of a character cannot be
checked on its own, and it lets newlines, tabs and other control characters into JSON strings
raw. So with this backend no output contains a control character.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Hashable
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
from pampero.errors import UnsupportedParameter

# What lm-format-enforcer's JSON parser enforces; a schema using anything else is refused
# rather than silently loosened.
ENFORCED = CORE_KEYWORDS
# Regex features beyond the regular core that lm-format-enforcer (interegular) enforces. It
# parses a lookahead and then does not enforce it (and builds an automaton whose masks take
# minutes), and reads a possessive ``a++`` as ``(a+)+``: those are refused before it sees them.
REGEX = frozenset({FLAG_IGNORECASE})

# CPU seconds one mask may take (a new parser state's first mask is the costly one: ~0.1 s).
MASK_CPU_LIMIT = 1.0
_CHECK_EVERY = 256  # parser steps between looks at the clock
# lm-format-enforcer lets tokens holding control characters into JSON strings raw (invalid
# JSON), so such tokens (newlines and tabs included) are left out.
_CONTROL = re.compile(rb"[\x00-\x1f]")


@dataclass(frozen=True, eq=False)
class _Vocab:
    data: Any  # lmformatenforcer.TokenEnforcerTokenizerData
    masks: TokenMasks


class _Clock:
    """The CPU-time limit of the mask being computed, shared by a compiled spec's parsers (its
    matchers run on one thread). ``until`` is None between masks."""

    def __init__(self) -> None:
        self.until: float | None = None
        self.steps = 0
        self.expired = False

    def tick(self, expired: type[Exception]) -> None:
        if self.until is None:
            return
        self.steps += 1
        if self.steps % _CHECK_EVERY == 0 and time.thread_time() > self.until:
            self.expired = True
            raise expired("mask CPU limit")


class _Bounded:
    """A ``CharacterLevelParser`` that stops a mask's walk past its ``_Clock``'s limit. The
    parsers it returns are bounded too; everything else is its inner parser's."""

    def __init__(self, inner: Any, clock: _Clock, expired: type[Exception]) -> None:
        self.inner, self.clock, self.expired = inner, clock, expired

    def add_character(self, new_character: str) -> _Bounded:
        self.clock.tick(self.expired)
        return _Bounded(self.inner.add_character(new_character), self.clock, self.expired)

    def get_allowed_characters(self) -> str:
        allowed: str = self.inner.get_allowed_characters()
        return allowed

    def can_end(self) -> bool:
        return bool(self.inner.can_end())

    def shortcut_key(self) -> Hashable | None:
        key: Hashable | None = self.inner.shortcut_key()
        return key

    def cache_key(self) -> Hashable | None:
        key: Hashable | None = self.inner.cache_key()
        return key

    @property
    def config(self) -> Any:
        return self.inner.config

    @config.setter
    def config(self, value: Any) -> None:
        self.inner.config = value


@dataclass(frozen=True, eq=False)
class _Compiled:
    enforcer: Any  # lmformatenforcer.TokenEnforcer, shared by the spec's sequences
    masks: TokenMasks
    clock: _Clock


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
        clock = _Clock()
        expired = library("lmformatenforcer.exceptions").LMFormatEnforcerException
        try:
            parser = _Bounded(_PARSERS[spec.kind](lmfe, spec), clock, expired)
            compiled = _Compiled(lmfe.TokenEnforcer(state.data, parser), state.masks, clock)
            _Matcher(compiled)._state()  # the first mask
        except UnsupportedParameter as exc:
            raise UnsupportedParameter(exc.message, param=spec.param) from None
        except Exception as exc:  # interegular's and pydantic's errors share no base class
            raise compile_refusal(self.name, spec, exc) from None
        return compiled

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
        self._clock = compiled.clock
        self._parse_state = type(compiled.enforcer).OutputTensorState(
            parser=compiled.enforcer.root_parser
        )
        self._raw = np.zeros(compiled.masks.size, dtype=np.bool_)

    def _raw_allowed(self) -> tuple[BoolMask, bool]:
        state = self._parse_state
        if state.allowed_tokens is None:
            self._compute(state)
        raw = self._raw
        raw.fill(False)
        allowed = state.allowed_tokens.allowed_tokens
        if allowed:
            raw[np.fromiter(allowed, dtype=np.intp, count=len(allowed))] = True
        return raw, bool(state.parser.can_end())

    def _advance(self, token_id: int) -> bool:
        self._parse_state = self._enforcer._apply_new_characters(self._parse_state, [token_id])
        return True

    def _compute(self, state: Any) -> None:
        clock = self._clock
        clock.until, clock.expired = time.thread_time() + MASK_CPU_LIMIT, False
        try:
            self._enforcer._compute_allowed_tokens((), state)
        except Exception:
            if not clock.expired:
                raise
            raise UnsupportedParameter(
                f"a lm-format-enforcer mask for this constraint took more than "
                f"{MASK_CPU_LIMIT:g} s of CPU time"
            ) from None
        finally:
            clock.until = None
