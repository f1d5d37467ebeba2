"""Structured outputs: constraint specs compiled by pluggable backends into per-sequence matchers.

``base`` is the seam, ``registry`` names the backends (``auto``, ``xgrammar``, ``guidance``,
``outlines``, ``lm-format-enforcer``), ``compiler`` compiles under a deadline in killable worker
processes with a bounded cache, ``vocab`` adapts a model's tokenizer, ``validation`` holds the
checks every spec passes first. Backends live in ``backends/``, each importing its library only
when chosen.
"""

from pampero.constraints.base import (
    CompiledConstraint,
    ConstraintBackend,
    ConstraintSpec,
    ConstraintVocabulary,
    Matcher,
)
from pampero.constraints.compiler import ConstraintCompiler, compile_in_process
from pampero.constraints.registry import BackendRegistry
from pampero.constraints.vocab import vocabulary_from_tokenizer

__all__ = [
    "BackendRegistry",
    "CompiledConstraint",
    "ConstraintBackend",
    "ConstraintCompiler",
    "ConstraintSpec",
    "ConstraintVocabulary",
    "Matcher",
    "compile_in_process",
    "vocabulary_from_tokenizer",
]
