"""The check after generation for a schema followed non-strictly (``schema_relax``).

``PostCheck.problem(text)`` validates generated text against the *full* schema with
``jsonschema`` and says what is wrong (None if nothing). It is safe on any schema a client
sends: ``$ref``\\ s resolve only inside the schema (nothing is fetched), and every regex
(``pattern``, ``patternProperties``, the names ``additionalProperties`` tests) runs in the
``regex`` module under a time limit, so no pattern can hold a thread by backtracking.

Example::

    check = PostCheck.of('{"type": "array", "uniqueItems": true}', ("uniqueItems",))
    check.problem("[1, 1]")   # "at $: [1, 1] has non-unique elements"
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import regex
from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry

REGEX_SECONDS = 0.05  # per search; a pattern slower than that counts as not matching
_CACHED_VALIDATORS = 128


def _search(pattern: str, text: str) -> bool | None:
    """Whether ``pattern`` matches in ``text``; None if it cannot tell (bad or too slow)."""
    try:
        return regex.search(pattern, text, timeout=REGEX_SECONDS) is not None
    except (regex.error, TimeoutError):
        return None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and _search(pattern, instance) is not True:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if _search(pattern, name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(
    validator: Any, extra: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    listed = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    unlisted = [
        name
        for name in instance
        if name not in listed and not any(_search(p, name) is not False for p in patterns)
    ]
    if extra is False and unlisted:
        yield ValidationError(f"unexpected properties {', '.join(map(repr, sorted(unlisted)))}")
    elif isinstance(extra, dict):
        for name in unlisted:
            yield from validator.descend(instance[name], extra, path=name)


def _validator_class(schema: Any) -> Any:
    base = validators.validator_for(schema, default=Draft202012Validator)
    checks = {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    }
    chosen = {k: v for k, v in checks.items() if k in base.VALIDATORS}
    return validators.extend(base, chosen)  # type: ignore[no-untyped-call]


@lru_cache(maxsize=_CACHED_VALIDATORS)
def _validator(schema_text: str) -> Any:
    schema = json.loads(schema_text)
    cls = _validator_class(schema)
    return cls(schema, registry=Registry(), format_checker=cls.FORMAT_CHECKER)


@dataclass(frozen=True)
class PostCheck:
    """The full schema a relaxed constraint stands for, and what the relaxation dropped."""

    schema_text: str
    dropped: tuple[str, ...]
    _validator: Any = field(repr=False, compare=False, default=None)

    @classmethod
    def of(cls, schema_text: str, dropped: tuple[str, ...]) -> PostCheck:
        return cls(schema_text, dropped, _validator(schema_text))

    def problem(self, text: str) -> str | None:
        """What makes ``text`` fail the full schema (the first error), or None."""
        try:
            document = json.loads(text)
        except ValueError as exc:
            return f"the output is not JSON ({exc})"
        try:
            error = next(iter(self._validator.iter_errors(document)), None)
        except Exception as exc:  # a $ref the check cannot resolve, a recursion too deep
            return f"the output could not be checked against the schema ({exc})"
        if error is None:
            return None
        where = "$" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
        )
        return f"at {where}: {error.message}"
