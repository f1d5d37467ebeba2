"""The subschemas a JSON Schema node holds, for the rewrites that rebuild a schema bottom-up
(``schema_rewrite``, ``schema_intersect``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SUBSCHEMA = ("items", "additionalProperties", "additionalItems", "contains", "not", "if", "then",
             "else", "propertyNames", "unevaluatedItems", "unevaluatedProperties")  # fmt: skip
SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems", "items")
SUBSCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas", "dependencies")
CONTAINERS = ("$defs", "definitions")


def with_children(
    node: dict[str, Any], rebuild: Callable[[Any], Any], *, containers: bool = True
) -> dict[str, Any]:
    """A copy of ``node`` with ``rebuild`` applied to every subschema it holds directly (and to
    its definitions unless ``containers`` is False). Map values that are not schemas, such as a
    dependency's list of names, stay as they are."""
    out = dict(node)
    for key in SUBSCHEMA:
        if isinstance(out.get(key), dict):
            out[key] = rebuild(out[key])
    for key in SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [rebuild(item) for item in out[key]]
    for key in SUBSCHEMA_MAPS + (CONTAINERS if containers else ()):
        if isinstance(out.get(key), dict):
            out[key] = {
                name: rebuild(value) if isinstance(value, dict | bool) else value
                for name, value in out[key].items()
            }
    return out
