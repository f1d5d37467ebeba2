"""Structured-output requests: OpenAI's ``response_format``, vLLM's legacy ``guided_*`` fields
and vLLM's newer ``structured_outputs`` object.

Only the shape is checked here (a schema is a JSON object, a choice list is not empty, at most
one constraint per request); compiling a constraint belongs to ``pampero.constraints``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, PlainValidator, model_validator

from pampero.protocol.common import (
    NonEmptyStr,
    ProtocolModel,
    by_key,
    field_error,
    tag,
    tagged_union,
    type_error,
    value_error,
)


def _json_schema(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise value_error("expected a JSON schema, but the string is not valid JSON.") from None
        if not isinstance(value, dict):
            raise value_error(
                "expected a JSON schema object, but the string holds another JSON value."
            )
        return value
    if isinstance(value, dict):
        return value
    raise type_error("a JSON schema (an object, or a string holding one)")


JsonSchema = Annotated[dict[str, Any], PlainValidator(_json_schema)]
"""A JSON schema sent as an object or as a JSON-encoded string, parsed to a dict."""


class ResponseFormatText(ProtocolModel):
    type: Literal["text"]


class ResponseFormatJsonObject(ProtocolModel):
    type: Literal["json_object"]


class JsonSchemaFormat(ProtocolModel):
    name: NonEmptyStr
    description: str | None = None
    # ``schema`` would shadow a BaseModel attribute, hence the alias.
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatJsonSchema(ProtocolModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[
    Annotated[ResponseFormatText, tag("text")]
    | Annotated[ResponseFormatJsonObject, tag("json_object")]
    | Annotated[ResponseFormatJsonSchema, tag("json_schema")],
    tagged_union("type", "'text', 'json_object' or 'json_schema'", by_key("type")),
]


class StructuredOutputs(ProtocolModel):
    """vLLM's ``structured_outputs``: exactly one of ``json``, ``regex``, ``choice``,
    ``grammar`` or ``json_object``, plus an optional whitespace pattern for JSON."""

    # ``json`` would shadow a BaseModel attribute, hence the alias.
    json_: JsonSchema | None = Field(default=None, alias="json")
    regex: str | None = None
    choice: Annotated[list[str], Field(min_length=1)] | None = None
    grammar: NonEmptyStr | None = None
    json_object: bool | None = None
    whitespace_pattern: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StructuredOutputs:
        kinds = [
            name
            for name, value in (
                ("json", self.json_),
                ("regex", self.regex),
                ("choice", self.choice),
                ("grammar", self.grammar),
                ("json_object", self.json_object or None),
            )
            if value is not None
        ]
        if not kinds:
            raise field_error(
                None,
                "Invalid value for 'structured_outputs': set one of 'json', 'regex', 'choice', "
                "'grammar' or 'json_object'.",
            )
        if len(kinds) > 1:
            raise field_error(
                kinds[1],
                "Invalid value for 'structured_outputs': only one constraint may be set, but "
                f"got {' and '.join(repr(k) for k in kinds)}.",
            )
        return self


class StructuredOutputFields(ProtocolModel):
    """The structured-output fields of chat and completion requests."""

    response_format: ResponseFormat | None = None
    guided_json: JsonSchema | None = None
    guided_regex: str | None = None
    guided_choice: Annotated[list[str], Field(min_length=1)] | None = None
    guided_grammar: NonEmptyStr | None = None
    guided_whitespace_pattern: str | None = None
    guided_decoding_backend: NonEmptyStr | None = None
    structured_outputs: StructuredOutputs | None = None

    @model_validator(mode="after")
    def _one_constraint(self) -> StructuredOutputFields:
        kinds = self.constraint_fields()
        if len(kinds) > 1:
            # A silent precedence rule (vLLM lets guided_json win over response_format) would
            # hide a client bug; refuse instead.
            raise field_error(
                kinds[1],
                "Only one structured-output constraint may be set per request, but got "
                f"{' and '.join(repr(k) for k in kinds)}.",
            )
        return self

    def constraint_fields(self) -> list[str]:
        """Names of the request fields that ask for constrained output, in field order."""
        kinds = [
            name
            for name, value in (
                ("guided_json", self.guided_json),
                ("guided_regex", self.guided_regex),
                ("guided_choice", self.guided_choice),
                ("guided_grammar", self.guided_grammar),
                ("structured_outputs", self.structured_outputs),
            )
            if value is not None
        ]
        if self.response_format is not None and self.response_format.type != "text":
            kinds.insert(0, "response_format")
        return kinds
