"""Tool definitions and tool choice, plus the legacy ``functions``/``function_call`` pair."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from pampero.protocol.common import (
    NonEmptyStr,
    ProtocolModel,
    string_or_object,
    tag,
    tagged_union,
)


class FunctionDefinition(ProtocolModel):
    name: NonEmptyStr
    description: str | None = None
    # A JSON schema; ``None`` means a function without parameters.
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(ProtocolModel):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(ProtocolModel):
    name: NonEmptyStr


class NamedToolChoice(ProtocolModel):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], tag("str")]
    | Annotated[NamedToolChoice, tag("object")],
    tagged_union(
        "",
        "'none', 'auto', 'required' or an object naming a function",
        string_or_object,
    ),
]
FunctionCallChoice = Annotated[
    Annotated[Literal["none", "auto"], tag("str")] | Annotated[FunctionName, tag("object")],
    tagged_union("", "'none', 'auto' or an object naming a function", string_or_object),
]

Tools = Annotated[list[Tool], Field(max_length=128)]
Functions = Annotated[list[FunctionDefinition], Field(min_length=1, max_length=128)]
