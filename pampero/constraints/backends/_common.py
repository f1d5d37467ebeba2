"""What every backend's matcher shares: end tokens, special tokens, one mask per state.

A backend supplies two things: its own allowed-token mask for the current state (with whether
the output may end here) and a way to advance. ``MaskedMatcher`` adds the rules that must not
differ between backends: special tokens never appear in constrained text; every end-of-generation
token is allowed exactly when the output may end, and accepting one ends the matcher; a refused
token changes nothing. The mask of a state is computed once (``is_terminated`` computes the next
state's mask, which the following ``fill_allowed`` then only copies).
"""

from __future__ import annotations

import importlib
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from pampero.constraints.base import ConstraintSpec, ConstraintVocabulary
from pampero.constraints.regex_features import spec_regex_features
from pampero.constraints.validation import ignored_keywords, unenforced_keywords
from pampero.constraints.vocab import TokenMasks
from pampero.errors import InvalidRequestError, UnsupportedParameter

BoolMask = npt.NDArray[np.bool_]
T = TypeVar("T")
_CPP_LOCATION = re.compile(r"\[\d\d:\d\d:\d\d\] \S+?:\d+: ")

ANY_OBJECT = '{"type": "object"}'  # json_object: any JSON object
# Whitespace between JSON tokens when the request names no pattern: a space, or one line break
# and an indent, as llama.cpp's JSON grammars allow. Unbounded whitespace lets a small model
# loop on blank lines until max_tokens (seen on JSONSchemaBench with greedy decoding).
MAX_INDENT = 40
JSON_WHITESPACE = rf"(?: |\n[ \t]{{0,{MAX_INDENT}}})?"
# The structural core of JSON Schema, which the character- and regex-level backends enforce
# (not allOf: they do not intersect its clauses, so {"allOf": [{"required": ["b"]}]} lets {} out).
CORE_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "enum",
        "const",
        "anyOf",
        "$ref",
    }
)


class MaskedMatcher(ABC):
    """Implements ``pampero.constraints.base.Matcher`` over a backend's ``_raw_allowed``."""

    def __init__(self, masks: TokenMasks) -> None:
        self._masks = masks
        self._allowed: BoolMask = np.zeros(masks.size, dtype=np.bool_)
        self._fresh = False  # _allowed describes the current state
        self._complete = False  # only an end token may follow
        self._ended = False  # an end token was accepted

    @abstractmethod
    def _raw_allowed(self) -> tuple[BoolMask, bool]:
        """The backend's mask for the current state (at least ``size`` long; end and special
        tokens in it are ignored) and whether the output may end here."""

    @abstractmethod
    def _advance(self, token_id: int) -> bool:
        """Advance the backend on a text token the mask allowed."""

    def _state(self) -> BoolMask:
        if not self._fresh:
            raw, can_end = self._raw_allowed()
            allowed = self._allowed
            np.logical_and(raw[: self._masks.size], self._masks.text, out=allowed)
            self._complete = can_end and not allowed.any()
            allowed[self._masks.eos] = can_end
            self._fresh = True
        return self._allowed

    def fill_allowed(self, mask: BoolMask) -> None:
        if self._ended:
            mask.fill(False)
            return
        allowed = self._state()
        if mask.shape[0] == allowed.shape[0]:
            np.copyto(mask, allowed)
        else:
            mask.fill(False)
            n = min(mask.shape[0], allowed.shape[0])
            mask[:n] = allowed[:n]

    def accept(self, token_id: int) -> bool:
        if self._ended or not 0 <= token_id < self._masks.size:
            return False
        if not self._state()[token_id]:
            return False
        if token_id in self._masks.eos_set:
            self._ended = True
            return True
        if not self._advance(token_id):
            return False
        self._fresh = False
        return True

    def is_terminated(self) -> bool:
        if self._ended:
            return True
        self._state()
        return self._complete


class PackedBits:
    """A backend's 32-bit-word token bitmask (the layout xgrammar, llguidance and outlines-core
    fill), unpacked to booleans with numpy."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.words = np.zeros((1, (size + 31) // 32), dtype=np.int32)

    def unpack(self) -> BoolMask:
        bits = np.unpackbits(self.words.view(np.uint8), count=self.size, bitorder="little")
        return bits.view(np.bool_)


class PerVocabulary(Generic[T]):
    """A backend's adaptation of each vocabulary, built once (thread-safe) and kept."""

    def __init__(self, build: Callable[[ConstraintVocabulary], T]) -> None:
        self._build = build
        self._built: dict[str, T] = {}
        self._lock = threading.Lock()

    def get(self, vocabulary: ConstraintVocabulary) -> T:
        found = self._built.get(vocabulary.model_key)
        if found is None:
            with self._lock:
                found = self._built.get(vocabulary.model_key)
                if found is None:
                    found = self._build(vocabulary)
                    self._built[vocabulary.model_key] = found
        return found


def library_message(exc: BaseException) -> str:
    """A library's error text without C++ source locations and debug dumps: its first lines."""
    text = _CPP_LOCATION.sub("", str(exc)).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return " ".join(lines[:3])[:500] or type(exc).__name__


def library(name: str) -> Any:
    """A backend's library, imported on first use. Typed ``Any`` on purpose: pampero's type
    check must not depend on which optional libraries are installed (nor walk torch through
    xgrammar)."""
    return importlib.import_module(name)


def compile_refusal(
    backend: str, spec: ConstraintSpec, error: BaseException | str
) -> InvalidRequestError:
    """The 400 for a spec the library would not compile: a grammar is the client's to fix
    (``InvalidRequestError``); any other spec is one this backend cannot express
    (``UnsupportedParameter``: ``auto`` tries the next backend)."""
    exc = Exception(error) if isinstance(error, str) else error
    message = f"{backend} cannot compile this {spec.kind}: {library_message(exc)}"
    if spec.kind == "grammar":
        return InvalidRequestError(message, param=spec.param)
    return UnsupportedParameter(message, param=spec.param)


def unenforced_features(
    spec: ConstraintSpec,
    backend: str,
    *,
    regex: frozenset[str] = frozenset(),
    enforced: frozenset[str] | None = None,
    ignored: frozenset[str] = frozenset(),
) -> str | None:
    """Why ``backend`` cannot take ``spec`` (None if it can), decided without compiling: the
    regex features it uses beyond ``regex`` (``regex_features``: lookaround, backreferences,
    ...), and for a JSON schema the keywords outside ``enforced`` (None: any) or in
    ``ignored``. A ``ConstraintBackend.unsupported`` helper; a schema that is not valid JSON is
    left to validation."""
    features = sorted(spec_regex_features(spec) - regex)
    if features:
        return f"{backend} does not enforce the regex feature(s) {', '.join(features)}"
    if spec.kind != "json_schema":
        return None
    try:
        keywords = ignored_keywords(spec.value, ignored)
        if enforced is not None:
            keywords += unenforced_keywords(spec.value, enforced)
    except (ValueError, TypeError, RecursionError):
        return None
    if keywords:
        return f"{backend} does not enforce the JSON Schema keyword(s) {', '.join(keywords)}"
    return None


def refuse_unenforced(spec: ConstraintSpec, backend: str, enforced: frozenset[str]) -> None:
    """Refuse a JSON schema that uses keywords outside what a backend ``enforced``."""
    if spec.kind == "json_schema":
        _refuse_keywords(spec, backend, unenforced_keywords(spec.value, enforced))


def refuse_ignored(spec: ConstraintSpec, backend: str, ignored: frozenset[str]) -> None:
    """Refuse a JSON schema that uses keywords a backend accepts but ``ignored``."""
    if spec.kind == "json_schema":
        _refuse_keywords(spec, backend, ignored_keywords(spec.value, ignored))


def _refuse_keywords(spec: ConstraintSpec, backend: str, keywords: list[str]) -> None:
    if keywords:
        raise UnsupportedParameter(
            f"{backend} does not enforce the JSON Schema keyword(s) {', '.join(keywords)}",
            param=spec.param,
        )
