"""What a model is asked and what it answers, shared by every layer that handles generation.

The tokenizer protocol, sampling parameters, a generation request, the per-step events an
engine streams back, and the capabilities and statistics an engine reports. Serving, sampling,
chat rendering and the constraint backends build on these types; engines implement them. This
module imports nothing else from pampero, so any layer may use it (``tests/unit/
test_layering.py`` checks that against ``layers.toml``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from pampero.errors import PamperoError

if TYPE_CHECKING:
    from PIL import Image

FinishReason = str  # "stop" | "length" | "abort"

IMAGE_PLACEHOLDER_ID = -1
"""In ``GenerationRequest.prompt_tokens``: "the next of ``images`` goes here".

The engine replaces each one with that image's tokens, wrapped the way its model expects (for
Qwen2-VL ``<|vision_start|>``, the image's tokens, ``<|vision_end|>``), so serving needs no model
knowledge, and ``EngineEvent.prompt_tokens`` counts the expanded prompt, image tokens included.
Build such a prompt with ``tokenize_with_images``."""


@runtime_checkable
class Tokenizer(Protocol):
    """A model's vocabulary, as serving and chat rendering need it."""

    vocab_size: int
    eog_token_ids: frozenset[int]  # every end-of-generation token (EOS, EOT, ...)
    bos_token_id: int | None
    bos_text: str | None
    eos_text: str | None
    fim_token_ids: tuple[int, int, int] | None  # prefix, suffix, middle (fill-in-the-middle)

    def encode(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[int]:
        """Tokens of ``text``. ``parse_special=False`` keeps ``<|im_start|>`` as plain text."""
        ...

    def decode(self, token_ids: Sequence[int], *, skip_special: bool = True) -> str:
        """Text of ``token_ids``; invalid UTF-8 is replaced."""
        ...

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one token's piece (control tokens give their text)."""
        ...

    def is_special(self, token_id: int) -> bool:
        """Whether a token is a control token (hidden by ``skip_special_tokens``)."""
        ...

    def special_texts(self) -> frozenset[str]:
        """The text of every control token, e.g. ``<|im_start|>``."""
        ...


@dataclass(frozen=True)
class Capabilities:
    """What a loaded model can do; serving branches on these, never on engine classes."""

    context_length: int
    supports_images: bool = False
    supports_tools: bool = False
    supports_logprobs: bool = True
    supports_prompt_logprobs: bool = True
    supports_beam_search: bool = True
    supports_speculative: bool = True  # the ``speculative`` request field
    has_draft_model: bool = False  # speculative method "draft"
    max_top_logprobs: int = 20


class LogitsProcessor(Protocol):
    """A named, server-registered function that edits one sequence's logits in place.

    ``output_ids`` are the tokens generated so far; ``logits`` is the float32 row for the next
    token. Return nothing; edit ``logits``.
    """

    def __call__(self, output_ids: Sequence[int], logits: npt.NDArray[np.float32]) -> None: ...


class ConstraintMatcher(Protocol):
    """One sequence's place in a structured-output constraint (see pampero.constraints)."""

    def fill_allowed(self, mask: npt.NDArray[np.bool_]) -> None: ...

    def accept(self, token_id: int) -> bool: ...

    def is_terminated(self) -> bool: ...


class ConstraintSource(Protocol):
    """A compiled constraint, shared by a request's sequences; each gets its own matcher."""

    def new_matcher(self) -> ConstraintMatcher: ...


@dataclass(frozen=True)
class SpeculativeParams:
    """Speculative decoding for one request: ``method`` ``"ngram"`` (prompt lookup) drafts up
    to ``num_tokens`` tokens per step; ``"none"`` turns off a server default."""

    method: str = "ngram"
    num_tokens: int = 16

    @property
    def enabled(self) -> bool:
        return self.method != "none" and self.num_tokens > 0


@dataclass
class SamplingParams:
    """Validated generation parameters for one request (vLLM's semantics)."""

    n: int = 1
    max_tokens: int | None = None  # None: up to the end of the context
    min_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: disabled
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    allowed_token_ids: list[int] | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    logprobs: int | None = None  # None: none; k: the chosen token plus the k most likely
    prompt_logprobs: int | None = None
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    use_beam_search: bool = False
    length_penalty: float = 1.0
    logits_processors: list[LogitsProcessor] = field(default_factory=list)
    constraint: ConstraintSource | None = None  # structured output: one matcher per sequence
    keep_special_ids: frozenset[int] = frozenset()  # control tokens kept in text (parser markup)
    speculative: SpeculativeParams | None = None  # None: the engine's default

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


@dataclass
class GenerationRequest:
    request_id: str
    prompt_tokens: list[int]  # IMAGE_PLACEHOLDER_ID marks where each of ``images`` goes
    sampling: SamplingParams
    priority: int = 0
    images: list[Image.Image] = field(default_factory=list)  # decoded, in prompt order
    # The request field the prompt came from, named by the engine's errors about it.
    prompt_param: str = "messages"


def tokenize_with_images(tokenizer: Tokenizer, text: str, marker: str) -> list[int]:
    """Tokens of ``text`` with ``IMAGE_PLACEHOLDER_ID`` wherever ``marker`` stands.

    Each stretch between markers is tokenized on its own (as llama.cpp's ``mtmd_tokenize``
    does), so no token straddles an image. ``marker`` should be a string the client cannot have
    typed, e.g. one with a per-request random part::

        marker = f"<image-{secrets.token_hex(8)}>"   # what the MediaPartHandler returned
        prompt_tokens = tokenize_with_images(engine.tokenizer, rendered.text, marker)
    """
    tokens: list[int] = []
    for i, piece in enumerate(text.split(marker)):
        if i:
            tokens.append(IMAGE_PLACEHOLDER_ID)
        if piece:
            tokens += tokenizer.encode(piece)
    return tokens


@dataclass
class TokenLogprob:
    """The chosen token's log-probability and the most likely alternatives at that step."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)
    rank: int = 1  # 1 + how many tokens were more likely than the chosen one


@dataclass
class SequenceDelta:
    """What one choice produced in one engine step."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    stop_reason: str | int | None = None
    error: PamperoError | None = None  # the choice failed (its text is not an answer)


@dataclass
class EngineEvent:
    """One step's output for one request: deltas for the choices that advanced."""

    deltas: list[SequenceDelta]
    prompt_tokens: int
    cached_tokens: int = 0
    prompt_logprobs: list[TokenLogprob | None] | None = None
    # Speculative decoding so far (whole request): draft tokens proposed, and accepted.
    draft_tokens: int = 0
    accepted_draft_tokens: int = 0


@dataclass
class EngineStats:
    running: int
    waiting: int
    kv_used_tokens: int
    kv_capacity_tokens: int
