"""Check pampero's responses against OpenAI's own schemas.

    from tests.spec.validate import validate_against
    validate_against("CreateChatCompletionResponse", body)          # the spec as written
    validate_against("CreateChatCompletionResponse", body,          # and no unknown fields
                     allow_extra={"reasoning_content", "stop_reason", "prompt_logprobs"})

The schemas come from ``openai-components.json`` (see ``extract_openai_components.py``).
OpenAPI 3.1 is JSON Schema 2020-12 apart from a few leftovers this module converts:
``nullable: true`` (an OpenAPI 3.0 keyword the spec still uses) becomes ``anyOf [..., null]``,
``#/components/schemas/X`` references become ``#/$defs/X``, and draft 2019-09's
``$recursiveRef: "#"`` (one Responses filter schema uses it) becomes a ``$ref`` to the schema it
sits in. ``discriminator`` and ``x-*``
annotations are left in place; JSON Schema ignores them.

The spec's object schemas do not set ``additionalProperties``, so by default extra fields
(vLLM's ``reasoning_content``, ``stop_reason``, ``prompt_logprobs``) pass. ``allow_extra``
closes every object schema that lists its properties, except for the given names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

COMPONENTS = Path(__file__).with_name("openai-components.json")
_REF_PREFIX = "#/components/schemas/"
_MAX_LISTED = 8


class SpecMismatch(AssertionError):
    """An instance does not match an OpenAI schema; the message lists where and why."""


def validate_against(
    schema_name: str, instance: Any, *, allow_extra: Iterable[str] | None = None
) -> None:
    """Raise ``SpecMismatch`` unless ``instance`` matches OpenAI's schema ``schema_name``.

    ``allow_extra=None`` checks the spec as written (unknown properties allowed); an iterable
    forbids unknown properties in every object schema except the names it lists.
    """
    extras = None if allow_extra is None else frozenset(allow_extra)
    validator = _validator(schema_name, extras)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    primary = best_match(errors)
    lines = [f"{schema_name} mismatch at {primary.json_path}: {_brief(primary)}"]
    others = [e for e in errors if e is not primary]
    lines += [f"  also at {e.json_path}: {_brief(e)}" for e in others[:_MAX_LISTED]]
    if len(others) > _MAX_LISTED:
        lines.append(f"  ... and {len(others) - _MAX_LISTED} more")
    raise SpecMismatch("\n".join(lines))


def schema_names() -> list[str]:
    """Every schema in ``openai-components.json``."""
    return sorted(_load()["components"]["schemas"])


def _brief(error: ValidationError) -> str:
    message = str(error.message)
    return message if len(message) <= 300 else message[:300] + "…"


@cache
def _load() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(COMPONENTS.read_text())
    return document


@cache
def _validator(schema_name: str, allow_extra: frozenset[str] | None) -> Draft202012Validator:
    schemas = _load()["components"]["schemas"]
    if schema_name not in schemas:
        raise KeyError(f"no schema {schema_name!r}; known: {', '.join(schema_names())}")
    defs = {
        name: to_json_schema(schema, allow_extra, home=name) for name, schema in schemas.items()
    }
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": defs,
        "$ref": f"#/$defs/{schema_name}",
    }
    Draft202012Validator.check_schema(root)
    return Draft202012Validator(root)


def to_json_schema(
    node: Any, allow_extra: frozenset[str] | None = None, home: str | None = None
) -> Any:
    """One OpenAPI 3.x schema converted to JSON Schema 2020-12; see the module docstring.
    ``home`` names the component ``node`` belongs to (the target of ``$recursiveRef``)."""
    if isinstance(node, list):
        return [to_json_schema(item, allow_extra, home) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: to_json_schema(value, allow_extra, home) for key, value in node.items()}
    converted.pop("$recursiveAnchor", None)
    if converted.pop("$recursiveRef", None) == "#" and home is not None:
        converted["$ref"] = f"#/$defs/{home}"
    ref = converted.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        converted["$ref"] = "#/$defs/" + ref.removeprefix(_REF_PREFIX)
    if allow_extra is not None and "properties" in converted:
        converted.setdefault("additionalProperties", False)
        converted["properties"] = {
            **{name: True for name in allow_extra},
            **converted["properties"],
        }
    if converted.pop("nullable", False):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted
