"""xgrammar: JSON Schema, any JSON object, regex, choice, GBNF and Lark grammars.

The vocabulary goes in as raw bytes (``VocabType.RAW``: GGUF pieces are already the bytes a
token stands for). Compiled grammars cross processes as xgrammar's own JSON serialisation, which
loads back in milliseconds. xgrammar has no free whitespace pattern, so specs that carry one are
left to guidance or outlines. ``import xgrammar`` also imports torch (its matcher module does),
about 2.5 s, once per process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pampero.constraints.backends._common import (
    ANY_OBJECT,
    MAX_INDENT,
    BoolMask,
    MaskedMatcher,
    PackedBits,
    PerVocabulary,
    compile_refusal,
    library,
    refuse_ignored,
    unenforced_features,
)
from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.regex_features import EDGE_ANCHOR
from pampero.constraints.validation import (
    COMBINED_BRANCHES,
    PATTERN_MEETS_PROPERTY,
    REQUIRED_UNLISTED,
    grammar_syntax,
)
from pampero.constraints.vocab import TokenMasks, text_pieces

# JSON Schema keywords xgrammar accepts but does not enforce: refused, never silently dropped.
# xgrammar reads ``oneOf`` as ``anyOf``: a ``oneOf`` whose branches are provably disjoint is
# rewritten to ``anyOf`` before it gets here (``schema_rewrite.py``), so one left is refused.
IGNORED = frozenset(
    {
        "oneOf",
        "allOf",  # its clauses are not intersected: {"allOf": [{"required": ["b"]}]} lets {} out
        COMBINED_BRANCHES,
        PATTERN_MEETS_PROPERTY,  # the listed property's schema alone is applied
        REQUIRED_UNLISTED,  # it allows no unlisted property, and drops the requirement
        "dependencies",
        "uniqueItems",
        "not",
        "if",
        "then",
        "else",
        "multipleOf",
        "contains",
        "minContains",
        "maxContains",
        "dependentRequired",
        "dependentSchemas",
    }
)


# Regex features beyond the regular core that xgrammar enforces. It refuses lookaround,
# backreferences, word boundaries and inline flags itself, but reads an anchor inside a pattern
# (``a$b``) as nothing, so pampero refuses that before it compiles.
REGEX = frozenset({EDGE_ANCHOR})


@dataclass(frozen=True, eq=False)
class _Vocab:
    info: Any  # xgrammar.TokenizerInfo
    compiler: Any  # xgrammar.GrammarCompiler
    masks: TokenMasks


@dataclass(frozen=True, eq=False)
class _Compiled:
    grammar: Any  # xgrammar.CompiledGrammar
    masks: TokenMasks


def _adapt(vocabulary: ConstraintVocabulary) -> _Vocab:
    xgr = library("xgrammar")
    info = xgr.TokenizerInfo(
        text_pieces(vocabulary),
        xgr.VocabType.RAW,
        vocab_size=vocabulary.size,
        stop_token_ids=sorted(vocabulary.eos_ids),
    )
    # One thread: compiles run in a worker beside the decode loop on a small machine. The
    # compiler's own cache is off: pampero's cache sits in the serving process.
    compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    return _Vocab(info, compiler, TokenMasks.of(vocabulary))


def _gbnf_literal(text: str) -> str:
    # JSON string escapes (\\", \\\\, \\n, \\uXXXX) are GBNF's too; keep non-ASCII as is.
    return json.dumps(text, ensure_ascii=False)


class XGrammarBackend:
    """Implements ``ConstraintBackend`` with xgrammar's grammar compiler and matcher."""

    name = "xgrammar"

    def __init__(self) -> None:
        self._vocab = PerVocabulary(_adapt)

    def unsupported(self, spec: ConstraintSpec) -> str | None:
        if spec.whitespace_pattern is not None:
            return "xgrammar takes no whitespace pattern (guidance and outlines do)"
        return unenforced_features(spec, self.name, regex=REGEX, ignored=IGNORED)

    def prepare(self, vocabulary: ConstraintVocabulary) -> None:
        self._vocab.get(vocabulary)

    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> str:
        compiler = self._vocab.get(vocabulary).compiler
        refuse_ignored(spec, self.name, IGNORED)
        build = _BUILDERS[spec.kind]
        try:
            compiled = build(compiler, spec)
        except (RuntimeError, ValueError) as exc:
            raise compile_refusal(self.name, spec, exc) from None
        text: str = compiled.serialize_json()
        return text

    def load(self, artifact: Any, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        state = self._vocab.get(vocabulary)
        grammar = library("xgrammar").CompiledGrammar.deserialize_json(artifact, state.info)
        return _Compiled(grammar, state.masks)

    def footprint(self, compiled: Any) -> int:
        return int(compiled.grammar.memory_size_bytes)

    def matcher(self, compiled: Any) -> _Matcher:
        return _Matcher(compiled)


def _json_schema(compiler: Any, spec: ConstraintSpec) -> Any:
    return compiler.compile_json_schema(
        spec.value, any_whitespace=True, max_whitespace_cnt=MAX_INDENT + 1
    )


def _json_object(compiler: Any, spec: ConstraintSpec) -> Any:
    # Not strict: any keys, any values.
    return compiler.compile_json_schema(
        ANY_OBJECT, any_whitespace=True, strict_mode=False, max_whitespace_cnt=MAX_INDENT + 1
    )


def _regex(compiler: Any, spec: ConstraintSpec) -> Any:
    return compiler.compile_regex(dot_without_newline(spec.value))


def dot_without_newline(pattern: str) -> str:
    """``pattern`` with every bare ``.`` spelled ``[^\\n]``.

    xgrammar's ``.`` also matches a newline; Python's ``re``, outlines and llguidance (and the
    regex a client validates the answer with) do not. Escapes and character classes are copied
    as they are.
    """
    out: list[str] = []
    i, class_body = 0, -1  # where the open character class's members begin (-1: none open)
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if class_body >= 0:
            if char == "]" and i > class_body:  # a "]" first in the class is a member
                class_body = -1
        elif char == "[":
            class_body = i + (2 if pattern[i + 1 : i + 2] == "^" else 1)
        elif char == ".":
            char = "[^\\n]"
        out.append(char)
        i += 1
    return "".join(out)


def _choice(compiler: Any, spec: ConstraintSpec) -> Any:
    alternatives = " | ".join(_gbnf_literal(choice) for choice in spec.value)
    return compiler.compile_grammar(f"root ::= {alternatives}")


def _grammar(compiler: Any, spec: ConstraintSpec) -> Any:
    if grammar_syntax(spec) == "lark":
        return compiler.compile_lark(spec.value)
    return compiler.compile_grammar(spec.value)


_BUILDERS: dict[str, Callable[[Any, ConstraintSpec], Any]] = {
    "json_schema": _json_schema,
    "json_object": _json_object,
    "regex": _regex,
    "choice": _choice,
    "grammar": _grammar,
}


class _Matcher(MaskedMatcher):
    def __init__(self, compiled: _Compiled) -> None:
        super().__init__(compiled.masks)
        self._matcher = library("xgrammar").GrammarMatcher(compiled.grammar)
        self._bits = PackedBits(compiled.masks.size)
        self._eos = compiled.masks.eos

    def _raw_allowed(self) -> tuple[BoolMask, bool]:
        self._matcher.fill_next_token_bitmask(self._bits.words)
        raw = self._bits.unpack()
        # xgrammar allows its stop tokens exactly where the grammar may end.
        return raw, bool(np.any(raw[self._eos]))

    def _advance(self, token_id: int) -> bool:
        return bool(self._matcher.accept_token(token_id))
