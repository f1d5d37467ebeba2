"""guidance (llguidance): JSON Schema (with a whitespace pattern), any JSON object, regex, choice,
Lark grammars (its native dialect) and GBNF (through llguidance's GBNF-to-Lark converter).

llguidance compiles lazily: building a matcher parses the grammar, and the lexer is built as
masks are computed. So the worker proves a spec by building a matcher and its first mask within
the deadline, and sends back only the grammar text; the serving process builds one template
matcher (and its first mask) per compiled spec, and each sequence gets a ``deep_copy`` of it,
which shares the lexer already built (microseconds). A spec that exceeds llguidance's own parser
limits is refused by the library, which is reported as a 400.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pampero.constraints.backends._common import (
    ANY_OBJECT,
    JSON_WHITESPACE,
    BoolMask,
    MaskedMatcher,
    PackedBits,
    PerVocabulary,
    compile_refusal,
    library,
    library_message,
    unenforced_features,
)
from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.regex_features import EDGE_ANCHOR, FLAG_IGNORECASE
from pampero.constraints.schema_close import closed
from pampero.constraints.schema_intersect import resolve_intersections
from pampero.constraints.schema_rewrite import rewrite_spec, without_formats
from pampero.constraints.validation import grammar_syntax
from pampero.constraints.vocab import TokenMasks, text_pieces
from pampero.errors import InvalidRequestError, UnsupportedParameter

# Regex features beyond the regular core that llguidance enforces as Python does. It refuses
# lookaround, backreferences, word boundaries, inner anchors and atomic groups itself, but
# reads a possessive ``a++`` as ``(a+)+``, so pampero refuses that before it compiles.
REGEX = frozenset({EDGE_ANCHOR, FLAG_IGNORECASE})
_MAX_PIECE = 64  # longest token the greedy tokenizer tries
_UNKNOWN_FORMAT = re.compile(r"Unknown format: ([^\s,;]+)")
_CIRCULAR = "circular references with sibling keys"


class _GreedyTokenizer:
    """What llguidance's ``TokenizerWrapper`` calls to tokenize text (it rarely does, for
    grammar literals): greedy longest match over the vocabulary's text tokens."""

    def __init__(self, vocabulary: ConstraintVocabulary) -> None:
        self.eos_token_id = min(vocabulary.eos_ids)
        self.bos_token_id = None
        closed = vocabulary.special_ids | vocabulary.eos_ids
        pieces = list(vocabulary.pieces)
        pieces.extend(b"" for _ in range(vocabulary.size - len(pieces)))
        self.tokens: Sequence[bytes] = pieces
        self.special_token_ids = sorted(closed - vocabulary.eos_ids)
        self._ids: dict[bytes, int] = {}
        for i, piece in enumerate(text_pieces(vocabulary)):
            if piece:
                self._ids.setdefault(piece, i)

    def __call__(self, text: bytes | str) -> list[int]:
        data = text.encode() if isinstance(text, str) else text
        out: list[int] = []
        i = 0
        while i < len(data):
            for n in range(min(_MAX_PIECE, len(data) - i), 0, -1):
                token = self._ids.get(data[i : i + n])
                if token is not None:
                    out.append(token)
                    i += n
                    break
            else:
                i += 1  # a byte no token spells: skipped
        return out


@dataclass(frozen=True, eq=False)
class _Vocab:
    tokenizer: Any  # llguidance.LLTokenizer
    masks: TokenMasks


@dataclass(frozen=True, eq=False)
class _Compiled:
    template: Any  # llguidance.LLMatcher at the start, its first mask computed
    grammar: str
    masks: TokenMasks


def _adapt(vocabulary: ConstraintVocabulary) -> _Vocab:
    llg = library("llguidance")
    wrapper = llg.TokenizerWrapper(_GreedyTokenizer(vocabulary))
    tokenizer = llg.LLTokenizer(
        wrapper, n_vocab=vocabulary.size, eos_token=sorted(vocabulary.eos_ids)
    )
    return _Vocab(tokenizer, TokenMasks.of(vocabulary))


def _limits() -> Any:
    return library("llguidance").LLParserLimits(verbose_errors=False)


class GuidanceBackend:
    """Implements ``ConstraintBackend`` with llguidance's ``LLMatcher``."""

    name = "guidance"

    def __init__(self) -> None:
        self._vocab = PerVocabulary(_adapt)

    def unsupported(self, spec: ConstraintSpec) -> str | None:
        return unenforced_features(spec, self.name, regex=REGEX)

    def prepare(self, vocabulary: ConstraintVocabulary) -> None:
        self._vocab.get(vocabulary)

    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> str:
        state = self._vocab.get(vocabulary)
        dropped: set[str] = set()
        intersected = False
        while True:
            grammar = _grammar_text(spec, frozenset(dropped), intersected)
            try:
                self._started(grammar, spec, state)  # proves the parser and first lexer build
            except InvalidRequestError as exc:
                if spec.kind != "json_schema":
                    raise
                unknown = _UNKNOWN_FORMAT.search(exc.message)
                if unknown is not None and unknown[1] not in dropped:
                    dropped.add(unknown[1])  # an annotation it cannot check, as others do
                elif _CIRCULAR in exc.message and not intersected:
                    intersected = True  # it cannot intersect a $ref it is still defining
                else:
                    raise
                continue
            return grammar

    def load(self, artifact: Any, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        state = self._vocab.get(vocabulary)
        return _Compiled(self._started(artifact, spec, state), artifact, state.masks)

    def footprint(self, compiled: Any) -> int:
        # llguidance does not report its lexer's size; the grammar text is a floor.
        return 4 * len(compiled.grammar) + 64 * 1024

    def matcher(self, compiled: Any) -> _Matcher:
        return _Matcher(compiled.template.deep_copy(), compiled.masks)

    def _started(self, grammar: str, spec: ConstraintSpec, state: _Vocab) -> Any:
        llg = library("llguidance")
        error = llg.LLMatcher.validate_grammar(grammar, state.tokenizer, limits=_limits())
        if error:
            raise _refusal(spec, error)
        matcher = llg.LLMatcher(state.tokenizer, grammar, limits=_limits(), log_level=0)
        bits = PackedBits(state.masks.size)
        library("llguidance.numpy").fill_next_token_bitmask(matcher, bits.words)
        if matcher.is_error():
            raise _refusal(spec, matcher.get_error())
        return matcher


def _refusal(spec: ConstraintSpec, error: str) -> InvalidRequestError:
    return compile_refusal(GuidanceBackend.name, spec, error)


def _grammar_text(
    spec: ConstraintSpec, unknown_formats: frozenset[str] = frozenset(), intersected: bool = False
) -> str:
    try:
        if spec.kind == "json_schema":
            return _json_schema(spec, unknown_formats, intersected)
        text: str = _TRANSLATORS[spec.kind](spec)
    except ValueError as exc:
        raise _refusal(spec, str(exc)) from None
    return text


def _json_options(spec: ConstraintSpec) -> dict[str, Any]:
    pattern = spec.whitespace_pattern
    return {"whitespace_pattern": JSON_WHITESPACE if pattern is None else pattern}


def _json_schema(
    spec: ConstraintSpec, unknown_formats: frozenset[str] = frozenset(), intersected: bool = False
) -> str:
    matcher = library("llguidance").LLMatcher
    schema = rewrite_spec(spec, clauses=True).value  # e.g. dependentRequired, which it lacks
    if unknown_formats:
        schema = without_formats(schema, unknown_formats)
    document = closed(json.loads(schema))  # no made-up keys, as xgrammar
    if intersected and (resolved := resolve_intersections(document)) is not None:
        document = resolved
    schema = json.dumps(document)
    text: str = matcher.grammar_from_json_schema(schema, overrides=_json_options(spec))
    return text


def _json_object(spec: ConstraintSpec) -> str:
    matcher = library("llguidance").LLMatcher
    text: str = matcher.grammar_from_json_schema(ANY_OBJECT, overrides=_json_options(spec))
    return text


def _regex(spec: ConstraintSpec) -> str:
    text: str = library("llguidance").LLMatcher.grammar_from_regex(spec.value)
    return text


def _choice(spec: ConstraintSpec) -> str:
    alternatives = " | ".join(json.dumps(choice, ensure_ascii=False) for choice in spec.value)
    text: str = library("llguidance").LLMatcher.grammar_from_lark(f"start: {alternatives}")
    return text


def _grammar(spec: ConstraintSpec) -> str:
    fmt = "lark" if grammar_syntax(spec) == "lark" else "gbnf"
    text: str = library("llguidance").grammar_from(fmt, spec.value)
    return text


_TRANSLATORS: dict[str, Callable[[ConstraintSpec], str]] = {
    "json_schema": _json_schema,
    "json_object": _json_object,
    "regex": _regex,
    "choice": _choice,
    "grammar": _grammar,
}


class _Matcher(MaskedMatcher):
    def __init__(self, matcher: Any, masks: TokenMasks) -> None:
        super().__init__(masks)
        self._matcher = matcher
        self._bits = PackedBits(masks.size)
        self._fill = library("llguidance.numpy").fill_next_token_bitmask

    def _raw_allowed(self) -> tuple[BoolMask, bool]:
        self._fill(self._matcher, self._bits.words)
        self._check()
        return self._bits.unpack(), bool(self._matcher.is_accepting())

    def _advance(self, token_id: int) -> bool:
        consumed = bool(self._matcher.consume_token(token_id))
        self._check()
        return consumed

    def _check(self) -> None:
        """llguidance stops a matcher whose lexer or parser outgrows its limits mid-output
        (``(a|a)*((a{1,20}){1,20}){1,20}`` does, a few tokens in): raise, so the sequence
        ends with an error instead of the truncated output passing for a complete one."""
        if self._matcher.is_error():
            raise UnsupportedParameter(
                "guidance gave up on this constraint mid-output: "
                + library_message(Exception(self._matcher.get_error()))
            )
