"""``POST /v1/completions``: OpenAI's legacy text completion plus vLLM's extras.

``prompt`` takes OpenAI's four forms, each kept as sent; ``prompts`` lists the prompts the
request actually asks for (a batch of one for a single string or token list)::

    "Once upon"             -> ["Once upon"]
    ["a", "b"]              -> ["a", "b"]
    [1, 2, 3]               -> [[1, 2, 3]]
    [[1, 2], [3]]           -> [[1, 2], [3]]
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from pampero.protocol.common import (
    MAX_LOGPROBS,
    GenerationFields,
    TokenId,
    field_error,
    tag,
    tagged_union,
)
from pampero.protocol.parsing import Parsed, parse_model
from pampero.protocol.structured import StructuredOutputFields

TokenIds = Annotated[list[TokenId], Field(min_length=1)]


def _prompt_form(value: Any) -> str | None:
    if isinstance(value, str):
        return "<text>"
    if not isinstance(value, list):
        return None
    first = value[0] if value else None
    if isinstance(first, str):
        return "<texts>"
    if isinstance(first, list):
        return "<token_lists>"
    # An empty list lands here too, so its error reads "expected a non-empty array".
    return "<tokens>"


Prompt = Annotated[
    Annotated[str, tag("text")]
    | Annotated[list[str], Field(min_length=1), tag("texts")]
    | Annotated[TokenIds, tag("tokens")]
    | Annotated[list[TokenIds], Field(min_length=1), tag("token_lists")],
    tagged_union(
        "",
        "a string, an array of strings, an array of token ids or an array of token-id arrays",
        _prompt_form,
    ),
]


class CompletionRequest(StructuredOutputFields, GenerationFields):
    """A text completion request. See ``GenerationFields`` for the sampling fields."""

    prompt: Prompt
    suffix: str | None = None
    # OpenAI's default; ``null`` asks for "up to the end of the context".
    max_tokens: Annotated[int, Field(ge=1)] | None = 16
    echo: bool = False
    logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    best_of: Annotated[int, Field(ge=1, le=20)] | None = None
    add_special_tokens: bool = True

    @property
    def prompts(self) -> list[str] | list[list[int]]:
        """The batch of prompts; see the module docstring."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if isinstance(prompt[0], int):
            return [prompt]
        return prompt

    @model_validator(mode="after")
    def _check_completion(self) -> CompletionRequest:
        self.check_min_tokens(self.max_tokens, "max_tokens")
        if self.best_of is not None:
            if self.best_of < self.n:
                raise field_error(
                    "best_of",
                    f"Invalid value for 'best_of': it must be at least 'n' ({self.n}), but got "
                    f"{self.best_of}.",
                )
            if self.stream and self.best_of > self.n:
                raise field_error(
                    "best_of",
                    "Invalid value for 'best_of': results cannot be streamed when 'best_of' is "
                    "greater than 'n'.",
                )
        return self


def parse_completion_request(body: bytes, *, strict: bool) -> Parsed[CompletionRequest]:
    """Parse a ``/v1/completions`` body; errors and ``strict`` as ``parse_chat_request``."""
    return parse_model(CompletionRequest, body, strict=strict)
