"""Building blocks every request model shares.

``ProtocolModel`` is the base of all request models: strict JSON types (``"0.5"`` is not a
number, ``1`` is not a boolean), no NaN or infinity, unknown keys kept aside so the parser can
report them, and ``null`` meaning "the default" for fields whose default is not ``None``.

Validators in this package never raise ``ValueError``: they raise the errors built here
(``field_error``, ``value_error``, ``type_error``, ``tagged_union``) so that
``pampero.protocol.parsing`` can turn every failure into an ``InvalidRequestError`` whose
``param`` names the offending field, OpenAI-style.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pampero.protocol.provider import FORBIDDEN_FIELDS, FallbackModels, ProviderPreferences

# Union members are tagged with names that cannot be JSON field names, so the error translator
# can drop them from a validation error's location (``messages.0.<user>.content`` becomes
# ``messages[0].content``).
TAG_OPEN = "<"

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Token ids index a vocabulary; anything past int32 cannot be one and would overflow the
# engine's token arrays.
TOKEN_ID_MAX = 2**31 - 1
# vLLM's default ``max_logprobs``; OpenAI caps ``top_logprobs`` at the same value.
MAX_LOGPROBS = 20
MAX_CHOICES = 128

Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
TokenId = Annotated[int, Field(ge=0, le=TOKEN_ID_MAX)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


def tag(name: str) -> Tag:
    """The tag of one union member; see ``TAG_OPEN``."""
    return Tag(f"{TAG_OPEN}{name}>")


def field_error(field: str | None, message: str) -> PydanticCustomError:
    """An error about ``field`` (relative to the model being validated, ``None`` for the value
    itself) whose ``message`` is shown to the client as is."""
    return PydanticCustomError("pampero", "{message}", {"message": message, "field": field or ""})


def value_error(detail: str) -> PydanticCustomError:
    """An invalid-value error about the value being validated; the translator prefixes it with
    ``Invalid value for '<param>':``."""
    return PydanticCustomError("pampero_value", "{detail}", {"detail": detail})


def type_error(expected: str) -> PydanticCustomError:
    """A wrong-type error; the translator adds the type the client actually sent."""
    return PydanticCustomError("pampero_type", "expected {expected}", {"expected": expected})


class _TaggedUnion(Discriminator):
    # Discriminator hashes its fields and the error context is a dict; typing hashes Annotated
    # metadata whenever an annotated type is itself a member of a union.
    __hash__ = object.__hash__


def tagged_union(key: str, expected: str, discriminator: Any) -> Discriminator:
    """A discriminator whose failures name ``key`` and list the ``expected`` values."""
    return _TaggedUnion(
        discriminator,
        custom_error_type="pampero_tag",
        custom_error_message="expected {expected}",
        custom_error_context={"field": key, "expected": expected},
    )


def by_key(key: str) -> Any:
    """A discriminator function reading the tag from ``value[key]``."""

    def discriminate(value: Any) -> str | None:
        if isinstance(value, dict):
            found = value.get(key)
            return f"{TAG_OPEN}{found}>" if isinstance(found, str) else None
        found = getattr(value, key, None)
        return f"{TAG_OPEN}{found}>" if isinstance(found, str) else None

    return discriminate


def string_or_object(value: Any) -> str | None:
    """Discriminates ``"auto"``-style string options from their object form."""
    if isinstance(value, str):
        return f"{TAG_OPEN}str>"
    if isinstance(value, dict | BaseModel):
        return f"{TAG_OPEN}object>"
    return None


def string_or_list(value: Any) -> str | None:
    """Discriminates message content: a plain string or an array of parts."""
    if isinstance(value, str):
        return f"{TAG_OPEN}str>"
    if isinstance(value, list):
        return f"{TAG_OPEN}list>"
    return None


def _admits_none(annotation: Any) -> bool:
    if annotation is None or annotation is type(None):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_admits_none(arg) for arg in typing.get_args(annotation))
    return False


class ProtocolModel(BaseModel):
    """Base of every request model; see the module docstring."""

    model_config = ConfigDict(
        extra="allow",
        strict=True,
        allow_inf_nan=False,
        serialize_by_alias=True,
    )

    # JSON keys of the fields where ``null`` means "use the default" (OpenAI's fields are
    # nullable, and clients such as LangChain send explicit nulls for everything unset).
    _null_is_default: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._null_is_default = frozenset(
            info.alias or name
            for name, info in cls.model_fields.items()
            if not info.is_required() and not _admits_none(info.annotation)
        )

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(data.get(key, 0) is None for key in cls._null_is_default):
            return {
                key: value
                for key, value in data.items()
                if value is not None or key not in cls._null_is_default
            }
        return data


def _stop_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise type_error("a string or an array of strings")
    if not all(value):
        raise value_error("stop sequences must not be empty.")
    return value


StopList = Annotated[list[str], PlainValidator(_stop_list)]
"""``stop`` as sent (a string or a list of strings), normalised to a list."""


def _logit_bias(value: Any) -> dict[int, float]:
    if not isinstance(value, dict):
        raise type_error("an object mapping token ids to biases")
    biases: dict[int, float] = {}
    for key, bias in value.items():
        if not (key.isascii() and key.isdigit()) or int(key) > TOKEN_ID_MAX:
            raise value_error(
                f"key {clip(key)!r} is not a token id; keys must be non-negative integers "
                "written as strings."
            )
        if isinstance(bias, bool) or not isinstance(bias, int | float):
            raise value_error(f"the bias for token {key} must be a number.")
        if not -100 <= bias <= 100:
            raise value_error(
                f"the bias for token {key} must be between -100 and 100, but got {bias}."
            )
        biases[int(key)] = float(bias)
    return biases


def _logit_bias_json(biases: dict[int, float]) -> dict[str, float]:
    return {str(token): bias for token, bias in biases.items()}


LogitBias = Annotated[
    dict[int, float],
    PlainValidator(_logit_bias),
    PlainSerializer(_logit_bias_json, when_used="json"),
]
"""OpenAI's ``logit_bias`` (token-id strings to -100..100), parsed to integer keys."""


def clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _top_k(value: int) -> int:
    # vLLM accepts -1 and 0 for "disabled"; keep one spelling so callers test a single value.
    return 0 if value == -1 else value


class StreamOptions(ProtocolModel):
    include_usage: bool | None = None
    # vLLM: attach running usage to every chunk, not only the last.
    continuous_usage_stats: bool | None = None
    include_obfuscation: bool | None = None


# Draft tokens verified per step, at most (llama.cpp's ``--draft-max`` default): each
# sequence drafts fewer while its drafts are being rejected (``engines/scheduler.py``).
MAX_SPECULATIVE_TOKENS = 16


class Speculative(ProtocolModel):
    """pampero's per-request speculative decoding: ``{"method": "ngram", "num_tokens": 16}``
    drafts by prompt lookup, ``"draft"`` by the model's draft model (``--draft-model``), up to
    ``num_tokens`` per step (fewer while drafts are rejected); ``{"method": "none"}`` turns off
    the server's default."""

    method: Literal["ngram", "draft", "none"]
    num_tokens: Annotated[int, Field(ge=1, le=MAX_SPECULATIVE_TOKENS)] = MAX_SPECULATIVE_TOKENS


class GenerationFields(ProtocolModel):
    """Fields shared by ``/v1/chat/completions`` and ``/v1/completions``: the OpenAI sampling
    parameters, vLLM's sampling extras, and the request-level knobs (priority, provider).

    Fields that a model's generation config may override (temperature, top_p, top_k, min_p,
    repetition_penalty) stay ``None`` when the client omitted them, as in vLLM.
    """

    model: NonEmptyStr

    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] = 1
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: Int64 | None = None
    stop: StopList = Field(default_factory=list)
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    logit_bias: LogitBias | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    use_beam_search: bool = False
    top_k: Annotated[int, Field(ge=-1), AfterValidator(_top_k)] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0)] | None = None
    length_penalty: float = 1.0
    stop_token_ids: list[TokenId] = Field(default_factory=list)
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: Annotated[int, Field(ge=0)] = 0
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    truncate_prompt_tokens: Annotated[int, Field(ge=1)] | None = None
    allowed_token_ids: Annotated[list[TokenId], Field(min_length=1)] | None = None
    prompt_logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    return_tokens_as_token_ids: bool = False
    # Names of server-registered processors; pampero never imports client-named code.
    logits_processors: list[NonEmptyStr] | None = None
    speculative: Speculative | None = None

    priority: Int64 = 0
    request_id: str | None = None
    # Gateway routing preferences (OpenRouter-style: order, allow_fallbacks, only, ignore,
    # sort, ...), interpreted by the gateway (pampero/gateway/); ``models``: fallback models.
    provider: ProviderPreferences | None = None
    models: FallbackModels | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_upstream_choice(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in FORBIDDEN_FIELDS:
                if name in data:
                    raise field_error(
                        name,
                        f"'{name}' is not accepted: the server chooses the upstream provider, "
                        "its address and its credentials; route with 'model', 'models' and "
                        "'provider'.",
                    )
        return data

    @model_validator(mode="after")
    def _check_generation(self) -> GenerationFields:
        if self.stream_options is not None and not self.stream:
            raise field_error(
                "stream_options",
                "Invalid value for 'stream_options': 'stream_options' is only allowed when "
                "'stream' is true.",
            )
        if self.prompt_logprobs is not None and self.stream:
            raise field_error(
                "prompt_logprobs",
                "Invalid value for 'prompt_logprobs': prompt logprobs are not available when "
                "'stream' is true.",
            )
        return self

    def check_min_tokens(self, max_tokens: int | None, max_tokens_param: str) -> None:
        """Raise when ``min_tokens`` exceeds the request's token budget."""
        if max_tokens is not None and self.min_tokens > max_tokens:
            raise field_error(
                "min_tokens",
                f"Invalid value for 'min_tokens': {self.min_tokens} is greater than "
                f"'{max_tokens_param}' ({max_tokens}).",
            )
