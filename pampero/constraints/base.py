"""The constraint seam: structured-output specs, backends that compile them, and matchers.

Serving turns every spelling a request may use (``response_format``, ``guided_*``,
``structured_outputs``) into one ``ConstraintSpec``. A ``ConstraintBackend`` compiles a spec
against a model's vocabulary in two halves, so that the expensive half can run in a worker
process that is killed when it overruns its deadline: ``compile`` (in the worker) checks and
compiles the spec and returns a picklable artifact; ``load`` (in the serving process) turns the
artifact into the compiled form, cheaply. Each sequence then gets its own ``Matcher`` which,
step by step, says which tokens are allowed and advances on the token chosen.
``pampero.constraints.compiler.ConstraintCompiler`` drives all of this (deadline, cache).

Example::

    backend = registry.create("xgrammar")
    spec = ConstraintSpec(kind="regex", value=r"\\d+", param="guided_regex")
    compiled = backend.load(backend.compile(spec, vocabulary), spec, vocabulary)
    matcher = backend.matcher(compiled)
    mask = np.zeros(vocabulary.size, dtype=bool)
    matcher.fill_allowed(mask)          # mask[i]: token i may come next
    matcher.accept(token)               # False if the token was not allowed
    matcher.is_terminated()             # True once the output is complete

Errors: a malformed spec is ``InvalidRequestError``; a well-formed spec that a backend cannot
express is ``UnsupportedParameter`` (``auto`` then tries the next backend). Both carry
``param=spec.param``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from pampero.constraints.distinct_keys import DistinctKeys, KeyIndex
from pampero.constraints.literal_loops import LiteralLoops, LoopIndex
from pampero.sampling.constraint import MaskBudget

ConstraintKind = Literal["json_schema", "json_object", "regex", "choice", "grammar"]


@dataclass(frozen=True)
class ConstraintSpec:
    """One constraint, whatever field it came from.

    ``value``: the JSON Schema (a JSON string, canonical: sorted keys) for ``json_schema``,
    ``None`` for ``json_object``, the pattern for ``regex``, a tuple of strings for ``choice``,
    the grammar text for ``grammar``. ``param`` names the request field, for error messages.
    """

    kind: ConstraintKind
    value: Any
    param: str
    whitespace_pattern: str | None = None
    grammar_syntax: Literal["gbnf", "lark"] | None = None  # for kind == "grammar"
    backend: str = "auto"
    # OpenAI's ``strict``: enforce all of a JSON schema or refuse it. Not strict, what no
    # backend enforces is dropped and checked after generation (``schema_relax``).
    strict: bool = True

    def key(self) -> tuple[Any, ...]:
        """What makes two specs compile to the same thing (the field they came from does not)."""
        return (self.kind, self.value, self.whitespace_pattern, self.grammar_syntax)


@dataclass(frozen=True)
class ConstraintVocabulary:
    """A model's vocabulary as constraint backends need it (picklable, for compile workers)."""

    model_key: str  # identifies the model (cache key part)
    pieces: Sequence[bytes]  # raw bytes of every token; control tokens give their text
    special_ids: frozenset[int]  # never part of constrained text (control tokens, empty pieces)
    eos_ids: frozenset[int]  # tokens that may end a constrained output
    size: int  # logits width (may exceed len(pieces))


class Matcher(Protocol):
    """One sequence's position in a compiled constraint."""

    def fill_allowed(self, mask: npt.NDArray[np.bool_]) -> None:
        """Set ``mask[i]`` to whether token ``i`` may come next (the mask is overwritten)."""
        ...

    def accept(self, token_id: int) -> bool:
        """Advance on ``token_id``; False (and no change) if it was not allowed."""
        ...

    def is_terminated(self) -> bool:
        """The output is complete: an end token was accepted, or nothing but one may follow."""
        ...


class ConstraintBackend(Protocol):
    """One constraint library behind the seam; imports its library only when first used."""

    name: str

    def unsupported(self, spec: ConstraintSpec) -> str | None:
        """Why this backend cannot express ``spec`` (None if it can), decided without compiling."""
        ...

    def prepare(self, vocabulary: ConstraintVocabulary) -> None:
        """Build what ``compile`` needs for ``vocabulary`` (once; may take seconds)."""
        ...

    def compile(self, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        """A picklable artifact of the compiled ``spec``; raises ``InvalidRequestError`` or
        ``UnsupportedParameter``. Runs in a compile worker, under the deadline; ``spec`` has
        already passed ``pampero.constraints.validation.validate``."""
        ...

    def load(self, artifact: Any, spec: ConstraintSpec, vocabulary: ConstraintVocabulary) -> Any:
        """The compiled form of ``spec`` from ``compile``'s artifact, in the serving process."""
        ...

    def footprint(self, compiled: Any) -> int:
        """Bytes the compiled form holds (measured where the library tells, else estimated)."""
        ...

    def matcher(self, compiled: Any) -> Matcher:
        """A fresh matcher at the start of the constraint."""
        ...


@dataclass(frozen=True, eq=False)
class CompiledConstraint:
    """A compiled spec, shared by every sequence of the requests that use it.

    Implements ``pampero.inference.ConstraintSource``: each sequence calls ``new_matcher``.
    """

    backend: str
    spec: ConstraintSpec
    size_bytes: int
    compiled: Any
    owner: ConstraintBackend
    mask_budget: MaskBudget | None = None  # what each token may cost on the decode thread
    # Set when a non-strict schema was relaxed to compile: the output is checked against the
    # full schema when generation ends (pampero.constraints.postcheck.PostCheck).
    check_after: Any = None
    # Set for JSON output: its objects never name a key twice (``distinct_keys``) and its
    # strings and numbers do not loop (``literal_loops``).
    key_index: KeyIndex | None = None
    loop_index: LoopIndex | None = None

    @property
    def param(self) -> str:
        return self.spec.param

    def new_matcher(self) -> Matcher:
        matcher = self.owner.matcher(self.compiled)
        if self.key_index is not None:
            matcher = DistinctKeys(matcher, self.key_index)
        if self.loop_index is not None:
            matcher = LiteralLoops(matcher, self.loop_index)
        return matcher
