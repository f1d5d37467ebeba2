"""The state of one request inside the scheduler, and of each of its choices (sequences)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pampero.engines.choice import ChoiceOutput
from pampero.inference import EngineEvent, GenerationRequest, SequenceDelta, TokenLogprob
from pampero.sampling.sampler import Sampler

if TYPE_CHECKING:
    from pampero.engines.beam import BeamSearch

IMAGE_CELL = -2  # a KV cell holding image embeddings; never matches in prefix reuse

Sink = Callable[[EngineEvent | BaseException | None], None]


class Phase(enum.Enum):
    WAITING_SIBLING = "waiting_sibling"  # n > 1: shares the first choice's prompt once prefilled
    PREFILL = "prefill"
    DECODE = "decode"
    DONE = "done"


@dataclass
class Sequence:
    """One choice of a request: its KV slot and tokens, and its output (``choice``)."""

    request: ActiveRequest
    slot: int
    tokens: list[int]  # prompt + generated; KV holds tokens[:n_past]
    n_past: int
    choice: ChoiceOutput
    phase: Phase = Phase.PREFILL
    # Positions are token indices minus this: an image's embeddings can take fewer positions
    # than KV cells (M-RoPE), so text after it starts earlier.
    pos_shift: int = 0
    # Speculative decoding: this step's draft tokens (decoded after tokens[-1]), and whether
    # every row of the step so far matched its draft (the next row is still valid).
    drafts: list[int] = field(default_factory=list)
    spec_open: bool = False
    # How many tokens to draft next (at most the request's ``num_tokens``): it doubles after
    # a step that accepted every draft and falls to one past what was accepted otherwise. A
    # step that accepted none also pauses drafting (``draft_wait`` steps, doubling with each
    # such step in a row), so text that copies its input drafts long windows and free text
    # wastes few rows: on two CPU cores a verify row costs most of a decode.
    draft_len: int = 0
    draft_wait: int = 0
    draft_pause: int = 1

    @property
    def index(self) -> int:
        return self.choice.index

    @property
    def n_prompt(self) -> int:
        return self.choice.n_prompt

    @property
    def sampler(self) -> Sampler:
        return self.choice.sampler

    @property
    def output_ids(self) -> list[int]:
        return self.choice.output_ids

    def delta(self) -> SequenceDelta | None:
        """What this sequence produced since the last delta, or None if nothing."""
        return self.choice.delta()


@dataclass
class ActiveRequest:
    """A request the scheduler knows about, from submission to its last event."""

    generation: GenerationRequest
    sink: Sink
    order: int
    sequences: list[Sequence] = field(default_factory=list)
    cancelled: bool = False
    cached_tokens: int = 0
    prompt_logprobs: list[TokenLogprob | None] | None = None
    sent_first: bool = False
    beam: BeamSearch | None = None
    prompt: list[int] = field(default_factory=list)  # with images expanded (cells: IMAGE_CELL)
    media: dict[int, Any] = field(default_factory=dict)  # prompt index -> the image chunk there
    drafted: int = 0  # speculative draft tokens verified so far
    accepted: int = 0  # of which the model agreed with

    @property
    def done(self) -> bool:
        return bool(self.sequences) and all(s.phase is Phase.DONE for s in self.sequences)

    def sort_key(self) -> tuple[int, int]:
        # vLLM's convention: a lower priority value is served earlier; ties by arrival.
        return (self.generation.priority, self.order)
