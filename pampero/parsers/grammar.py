"""Grammars for tool calls: what a format's parser gives serving to enforce calls with.

Every grammar here is Lark with JSON Schemas embedded (``%json {...}``), compiled by the
structured-output machinery (the ``guidance`` backend). A format builds its grammars from two
pieces: :func:`calls_schema`, the JSON Schema of one call object of any of the functions
(``{"name": <const>, <arguments key>: <parameters>}``), and :func:`lark_literal`, a quoted
Lark string for its markup.

Example (a forced single call in the Hermes format)::

    schema = calls_schema(functions, "arguments")
    opening, closing = lark_literal("<tool_call>\\n"), lark_literal("\\n</tool_call>")
    grammar = f"start: {opening} %json {schema} {closing}"
"""

from __future__ import annotations

from typing import Any

import orjson

from pampero.errors import InvalidRequestError

Function = dict[str, Any]  # an OpenAI function: name, description, parameters, strict


def _call_schema(function: Function, arguments_key: str, *, enforce: bool) -> dict[str, Any]:
    parameters = (function.get("parameters") or {"type": "object"}) if enforce else None
    return {
        "type": "object",
        "properties": {
            "name": {"const": function["name"]},
            arguments_key: parameters or {"type": "object"},
        },
        "required": ["name", arguments_key],
        "additionalProperties": False,
    }


def calls_schema(
    functions: list[Function], arguments_key: str, *, strict_only: bool = False
) -> str:
    """The JSON Schema text of one call of any of ``functions``.

    With ``strict_only``, only ``strict: true`` functions have their ``parameters`` enforced;
    the others take any object (``auto`` enforces what the client asked to be strict).
    """
    schemas = [
        _call_schema(f, arguments_key, enforce=not strict_only or bool(f.get("strict")))
        for f in functions
    ]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    try:
        return orjson.dumps(schema).decode()
    except orjson.JSONEncodeError:  # orjson stops at 254 levels; constraints allow 128
        raise InvalidRequestError(
            "a function's parameters schema nests too deep to be enforced", param="tools"
        ) from None


def lark_literal(text: str) -> str:
    """``text`` as a Lark string literal."""
    return orjson.dumps(text).decode()
