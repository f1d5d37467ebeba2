"""Every structured-output spelling a request may use, as one ``ConstraintSpec``.

``response_format`` (OpenAI), ``guided_json`` / ``guided_regex`` / ``guided_choice`` /
``guided_grammar`` (vLLM before 0.12, and the seeds), and ``structured_outputs`` (vLLM now) all
end up here; ``guided_whitespace_pattern`` and ``guided_decoding_backend`` apply to whichever
was given. The protocol layer has already made sure at most one constraint is present.

``guided_grammar`` is GBNF (llama.cpp's EBNF dialect, as vLLM's xgrammar path takes it) when it
defines rules with ``::=``, and Lark (llguidance's dialect) otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from pampero.constraints.base import CompiledConstraint, ConstraintSpec
from pampero.constraints.compiler import ConstraintCompiler
from pampero.constraints.disk_cache import DiskCache
from pampero.constraints.schema_depth import DEFAULT_DEPTH
from pampero.constraints.validation import DEFAULT_LIMITS
from pampero.constraints.vocab import CallOpeners, vocabulary_from_tokenizer
from pampero.errors import InvalidRequestError, UnsupportedParameter
from pampero.inference import SamplingParams
from pampero.protocol.structured import StructuredOutputFields
from pampero.serving.hub import ServedModel
from pampero.settings import Settings

DISK_CACHE_DIR = "constraint-cache"


def _schema_text(schema: dict[str, Any], param: str) -> str:
    # Key order is kept: backends generate properties in the schema's order, which clients
    # expect. (Equal schemas written in another order get their own cache entry.)
    try:
        return orjson.dumps(schema).decode()
    except orjson.JSONEncodeError:  # orjson stops at 254 levels, far past the limit
        raise InvalidRequestError(
            f"the JSON schema nests deeper than {DEFAULT_LIMITS.max_nesting} levels", param=param
        ) from None


def _grammar(value: str, param: str) -> ConstraintSpec:
    # The dialect (GBNF or Lark) is told apart by pampero.constraints.validation.
    return ConstraintSpec(kind="grammar", value=value, param=param)


def _from_response_format(request: StructuredOutputFields) -> ConstraintSpec | None:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ConstraintSpec(kind="json_object", value=None, param="response_format")
    schema = fmt.json_schema.schema_
    if schema is None:
        raise InvalidRequestError(
            "response_format of type 'json_schema' needs 'json_schema.schema'",
            param="response_format.json_schema.schema",
        )
    return ConstraintSpec(
        kind="json_schema",
        value=_schema_text(schema, "response_format.json_schema.schema"),
        param="response_format.json_schema.schema",
        strict=bool(fmt.json_schema.strict),
    )


def _from_guided(request: StructuredOutputFields) -> ConstraintSpec | None:
    if request.guided_json is not None:
        return ConstraintSpec(
            kind="json_schema",
            value=_schema_text(request.guided_json, "guided_json"),
            param="guided_json",
            strict=False,
        )
    if request.guided_regex is not None:
        return ConstraintSpec(kind="regex", value=request.guided_regex, param="guided_regex")
    if request.guided_choice is not None:
        return ConstraintSpec(
            kind="choice", value=tuple(request.guided_choice), param="guided_choice"
        )
    if request.guided_grammar is not None:
        return _grammar(request.guided_grammar, "guided_grammar")
    return None


def _from_structured_outputs(request: StructuredOutputFields) -> ConstraintSpec | None:
    so = request.structured_outputs
    if so is None:
        return None
    if so.json_ is not None:
        return ConstraintSpec(
            kind="json_schema",
            value=_schema_text(so.json_, "structured_outputs.json"),
            param="structured_outputs.json",
            strict=False,
        )
    if so.regex is not None:
        return ConstraintSpec(kind="regex", value=so.regex, param="structured_outputs.regex")
    if so.choice is not None:
        return ConstraintSpec(
            kind="choice", value=tuple(so.choice), param="structured_outputs.choice"
        )
    if so.grammar is not None:
        return _grammar(so.grammar, "structured_outputs.grammar")
    return ConstraintSpec(kind="json_object", value=None, param="structured_outputs.json_object")


def constraint_spec(request: StructuredOutputFields) -> ConstraintSpec | None:
    """The request's constraint, or None. Raises 400 for options without a constraint."""
    spec = (
        _from_response_format(request) or _from_guided(request) or _from_structured_outputs(request)
    )
    so = request.structured_outputs
    whitespace = request.guided_whitespace_pattern
    if whitespace is None and so is not None:
        whitespace = so.whitespace_pattern  # "" is a pattern (no whitespace), not an absence
    backend = request.guided_decoding_backend
    if spec is None:
        for name, value in (
            ("guided_whitespace_pattern", request.guided_whitespace_pattern),
            ("guided_decoding_backend", backend),
        ):
            if value is not None:
                raise InvalidRequestError(
                    f"{name} only applies together with a structured-output constraint "
                    "(response_format, guided_json, guided_regex, guided_choice, guided_grammar "
                    "or structured_outputs)",
                    param=name,
                )
        return None
    if whitespace is not None and spec.kind not in ("json_schema", "json_object"):
        raise InvalidRequestError(
            "a whitespace pattern only applies to JSON constraints",
            param="guided_whitespace_pattern",
        )
    return ConstraintSpec(
        kind=spec.kind,
        value=spec.value,
        param=spec.param,
        whitespace_pattern=whitespace,
        grammar_syntax=spec.grammar_syntax,
        backend=backend or "auto",
        strict=spec.strict,
    )


def _check_sampling(sampling: SamplingParams) -> None:
    if sampling.use_beam_search:
        raise UnsupportedParameter(
            "beam search cannot be combined with a structured-output constraint",
            param="use_beam_search",
        )


class Constraints:
    """One constraint compiler per served model, created on first use."""

    def __init__(
        self,
        deadline: float,
        disk_cache: DiskCache | None = None,
        max_recursion: int = DEFAULT_DEPTH,
    ) -> None:
        self.deadline = deadline
        self.disk_cache = disk_cache
        self.max_recursion = max_recursion
        self._compilers: dict[str, ConstraintCompiler] = {}
        self._openers: dict[tuple[str, str], CallOpeners] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Constraints:
        """The compile deadline, and the disk cache under the home dir, from ``settings``."""
        size = settings.constraint_disk_cache_mb << 20
        disk = DiskCache(settings.home / DISK_CACHE_DIR, size) if size else None
        return cls(settings.constraint_deadline, disk, settings.constraint_max_recursion)

    def call_openers(self, served: ServedModel, gap: str) -> CallOpeners:
        """The tokens of ``served`` that open a bare tool call, or separate calls (cached)."""
        key = (served.id, gap)
        if key not in self._openers:
            self._openers[key] = CallOpeners.of(self.compiler(served).vocabulary, gap)
        return self._openers[key]

    def compiler(self, served: ServedModel) -> ConstraintCompiler:
        compiler = self._compilers.get(served.id)
        if compiler is None:
            vocabulary = vocabulary_from_tokenizer(served.engine.tokenizer, model_key=served.id)
            compiler = ConstraintCompiler(
                vocabulary,
                deadline=self.deadline,
                disk_cache=self.disk_cache,
                max_recursion=self.max_recursion,
            )
            self._compilers[served.id] = compiler
        return compiler

    async def compile(
        self, served: ServedModel, spec: ConstraintSpec, sampling: SamplingParams
    ) -> CompiledConstraint:
        """Compile ``spec`` for ``served`` (400 if it cannot be, or not with ``sampling``)."""
        _check_sampling(sampling)
        return await self.compiler(served).compile(spec)

    async def compile_around(
        self,
        served: ServedModel,
        schema: ConstraintSpec,
        build: Callable[[str], ConstraintSpec],
        sampling: SamplingParams,
    ) -> CompiledConstraint:
        """Compile ``build(schema.value)`` for ``served``, a constraint made around a JSON
        schema: a non-strict one is relaxed into ``build`` if it cannot be compiled whole."""
        _check_sampling(sampling)
        return await self.compiler(served).compile_around_schema(schema, build)

    async def warm_up(self, models: list[ServedModel], backends: list[str]) -> None:
        """Prepare ``backends`` (settings' ``constraint_warm_up``) for every model."""
        for served in models:
            compiler = self.compiler(served)
            await compiler.warm_up(compiler.registry.warm_up_names(backends))

    async def aclose(self) -> None:
        for compiler in self._compilers.values():
            await compiler.aclose()
        self._compilers.clear()
