"""Fakes that plug in through pampero's own seams, for tests that need no model."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pampero.engines.drafter import ModelDrafter
from pampero.engines.scheduler import Scheduler, SchedulerConfig, Vocabulary
from pampero.engines.sequence import ActiveRequest
from pampero.inference import EngineEvent, GenerationRequest, SamplingParams, SequenceDelta

CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>")
LLAMA3_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
)
MISTRAL_SPECIALS = (
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[TOOL_CALLS]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
)


class ByteTokenizer:
    """A ``pampero.engines.base.Tokenizer``: one token per UTF-8 byte (ids 0-255) plus control
    tokens (ids from 256). It records every ``encode`` call as ``(text, parse_special)``."""

    def __init__(
        self,
        specials: Iterable[str] = CHATML_SPECIALS,
        *,
        bos: str | None = None,
        eos: str | None = "<|endoftext|>",
        add_eos: bool = False,
    ) -> None:
        self.specials = tuple(dict.fromkeys([*specials, *(t for t in (bos, eos) if t)]))
        self.ids = {text: 256 + i for i, text in enumerate(self.specials)}
        self.vocab_size = 256 + len(self.specials)
        self.bos_text, self.eos_text = bos, eos
        self.bos_token_id = self.ids[bos] if bos else None
        self.eos_token_id = self.ids[eos] if eos else None
        self.eog_token_ids = frozenset([self.eos_token_id] if self.eos_token_id is not None else [])
        self.add_eos = add_eos
        self.fim_token_ids: tuple[int, int, int] | None = None
        longest_first = sorted(self.specials, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(t) for t in longest_first))
        self.calls: list[tuple[str, bool]] = []

    def encode(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[int]:
        self.calls.append((text, parse_special))
        ids: list[int] = []
        if add_special and self.bos_token_id is not None:
            ids.append(self.bos_token_id)
        cursor = 0
        if parse_special:
            for match in self._pattern.finditer(text):
                ids += text[cursor : match.start()].encode()
                ids.append(self.ids[match.group()])
                cursor = match.end()
        ids += text[cursor:].encode()
        if add_special and self.add_eos and self.eos_token_id is not None:
            ids.append(self.eos_token_id)
        return ids

    def decode(self, token_ids: Sequence[int], *, skip_special: bool = True) -> str:
        return b"".join(
            self.token_bytes(t) for t in token_ids if not (skip_special and self.is_special(t))
        ).decode("utf-8", "replace")

    def token_bytes(self, token_id: int) -> bytes:
        if token_id < 256:
            return bytes([token_id])
        return self.specials[token_id - 256].encode()

    def is_special(self, token_id: int) -> bool:
        return token_id >= 256

    def special_texts(self) -> frozenset[str]:
        return frozenset(self.specials)

    def control_texts(self, token_ids: Sequence[int]) -> list[str]:
        """The control tokens among ``token_ids``, as text, in order."""
        return [self.specials[t - 256] for t in token_ids if t >= 256]


# -- a batch runner for the scheduler ----------------------------------------------------------

NextToken = Callable[[Sequence[int]], int]


def letters(context: Sequence[int]) -> int:
    """A lowercase letter that depends on every token of ``context`` (order included)."""
    h = 0
    for token in context:
        h = (h * 1_000_003 + token + 1) % (2**61 - 1)
    return ord("a") + h % 26


class Scripted:
    """Next-token policy: after a known prompt, play its script, then ``then`` (end of text).

    Contexts that extend no known prompt fall back to ``letters``."""

    def __init__(self, scripts: dict[bytes, Sequence[int] | bytes], *, then: int = 256) -> None:
        self.scripts = {tuple(p): list(s) for p, s in scripts.items()}
        self.then = then

    def __call__(self, context: Sequence[int]) -> int:
        known = [p for p in self.scripts if tuple(context[: len(p)]) == p]
        best = max(known, key=len, default=None)
        if best is None:
            return letters(context)
        script, i = self.scripts[best], len(context) - len(best)
        return script[i] if i < len(script) else self.then


def ramp(target: int, n_vocab: int) -> npt.NDArray[np.float32]:
    """Logits peaking at ``target``, then ``target+1``, ``target+2``... (wrapping), 0.5 apart."""
    return (-0.5 * ((np.arange(n_vocab) - target) % n_vocab)).astype(np.float32)


@dataclass(frozen=True)
class DecodedRow:
    seq_id: int
    position: int
    token: int
    wants_logits: bool


class FakeRunner:
    """A ``pampero.engines.scheduler.BatchRunner`` with exact KV bookkeeping and no model.

    Each sequence id's KV is the list of tokens decoded into it, by position. A decoded row must
    extend its sequence contiguously (position == len(KV)) and stay inside ``n_ctx_seq``; a batch
    must fit ``n_batch``; ``seq_copy`` must target an emptied sequence and copy only what its
    source holds. Violations are recorded in ``violations`` (and raised, as llama.cpp would fail),
    so a scheduler bug that mixes up KV shows up even when the outputs happen to look right.

    The logits of a row depend only on its sequence's KV up to and including that row:
    ``next_token(context)`` gets the highest logit (see ``ramp``). Outputs are therefore
    predictable from the prompt alone (``expected``), and any KV mix-up changes them.
    """

    def __init__(
        self,
        *,
        n_vocab: int = 260,
        n_batch: int = 64,
        n_ctx_seq: int = 128,
        max_seqs: int = 8,
        next_token: NextToken = letters,
    ) -> None:
        self.n_vocab, self.n_batch, self.n_ctx_seq = n_vocab, n_batch, n_ctx_seq
        self.max_seqs = max_seqs
        self.next_token = next_token
        self.kv: dict[int, list[int]] = {i: [] for i in range(max_seqs)}
        self.batches: list[list[DecodedRow]] = []
        self.violations: list[str] = []
        self.fail_next_decode: Exception | None = None
        self.broken: Exception | None = None  # every decode fails while set
        self.break_after: tuple[int, Exception] | None = None  # (decodes to go, then broken)
        # Tokens the "device" cannot decode: a batch holding one fails part-way, its earlier
        # rows already written to KV (as a llama.cpp micro-batch can fail after others ran).
        self.poison: frozenset[int] = frozenset()
        self.saved = 0  # seq_save calls (a prefix cache in host memory)

    def logits_for(self, context: Sequence[int]) -> npt.NDArray[np.float32]:
        return ramp(self.next_token(context), self.n_vocab)

    def expected(self, prompt: Sequence[int], n: int) -> list[int]:
        """The ``n`` tokens greedy decoding produces after ``prompt``."""
        context = list(prompt)
        for _ in range(n):
            context.append(self.next_token(context))
        return context[len(prompt) :]

    def _violate(self, message: str) -> None:
        self.violations.append(message)
        raise AssertionError(message)

    def decode(
        self,
        tokens: npt.NDArray[np.int32],
        positions: npt.NDArray[np.int32],
        seq_ids: npt.NDArray[np.int32],
        want_logits: npt.NDArray[np.int8],
    ) -> npt.NDArray[np.float32]:
        if self.fail_next_decode is not None:
            error, self.fail_next_decode = self.fail_next_decode, None
            raise error
        if self.break_after is not None:
            left, error = self.break_after
            self.break_after = (left - 1, error) if left > 0 else None
            if left <= 0:
                self.broken = error
        if self.broken is not None:
            raise self.broken
        n = len(tokens)
        if not 0 < n <= self.n_batch or not n == len(positions) == len(seq_ids) == len(want_logits):
            self._violate(f"batch of {n} rows (n_batch={self.n_batch})")
        rows = [
            DecodedRow(int(s), int(p), int(t), bool(w))
            for t, p, s, w in zip(tokens, positions, seq_ids, want_logits, strict=True)
        ]
        out: list[npt.NDArray[np.float32]] = []
        for row in rows:
            kv = self.kv.get(row.seq_id)
            if kv is None:
                self._violate(f"sequence id {row.seq_id} outside 0..{self.max_seqs - 1}")
                return np.empty(0, dtype=np.float32)
            if row.position != len(kv) or row.position >= self.n_ctx_seq:
                self._violate(
                    f"seq {row.seq_id}: token at position {row.position}, KV holds {len(kv)}"
                )
            if row.token in self.poison:
                raise RuntimeError(f"cannot decode token {row.token}")
            kv.append(row.token)
            if row.wants_logits:
                out.append(self.logits_for(kv))
        self.batches.append(rows)
        if not out:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        return np.stack(out)

    def seq_remove(self, seq_id: int, start: int = 0, end: int = -1) -> None:
        kv = self.kv[seq_id]
        if end != -1 and end < len(kv):
            self._violate(f"seq {seq_id}: removing [{start}, {end}) would leave a hole")
        del kv[start:]

    def seq_copy(self, src: int, dst: int, end: int = -1) -> None:
        if self.kv[dst]:
            self._violate(f"seq_copy into seq {dst}, which still holds {len(self.kv[dst])}")
        source = self.kv[src]
        if end > len(source):
            self._violate(f"seq_copy of {end} positions from seq {src}, which holds {len(source)}")
        self.kv[dst] = list(source if end == -1 else source[:end])

    def seq_save(self, seq_id: int) -> tuple[int, ...]:
        self.saved += 1
        return tuple(self.kv[seq_id])

    def seq_load(self, data: object, dst: int) -> None:
        assert isinstance(data, tuple)
        self.kv[dst] = list(data)  # llama.cpp empties dst first, as this does

    def rows_of(self, seq_id: int) -> list[list[DecodedRow]]:
        """Per batch, the rows that went to ``seq_id``."""
        return [[r for r in batch if r.seq_id == seq_id] for batch in self.batches]


class Collector:
    """A scheduler sink: keeps one request's events and how it ended."""

    def __init__(self) -> None:
        self.events: list[EngineEvent] = []
        self.error: BaseException | None = None
        self.closed = False
        self.active: ActiveRequest | None = None  # the scheduler's handle, for abort
        self.aborted = False

    def __call__(self, item: EngineEvent | BaseException | None) -> None:
        assert not self.closed, "an item arrived after the end of the stream"
        if item is None:
            self.closed = True
        elif isinstance(item, BaseException):
            self.error, self.closed = item, True
        else:
            self.events.append(item)

    def deltas(self, index: int = 0) -> list[SequenceDelta]:
        return [d for e in self.events for d in e.deltas if d.index == index]

    def text(self, index: int = 0) -> str:
        return "".join(d.text for d in self.deltas(index))

    def token_ids(self, index: int = 0) -> list[int]:
        return [t for d in self.deltas(index) for t in d.token_ids]

    def finish(self, index: int = 0) -> tuple[str | None, str | int | None]:
        last = self.deltas(index)[-1]
        return last.finish_reason, last.stop_reason


class _OneStep:
    """Stands in for the stop event of ``Scheduler.run``: lets the loop go round once."""

    def __init__(self) -> None:
        self.rounds = 0

    def is_set(self) -> bool:
        self.rounds += 1
        return self.rounds > 1


class SchedulerHarness:
    """A ``Scheduler`` over a ``FakeRunner`` and a ``ByteTokenizer``, driven one step at a time
    through its public ``run`` loop."""

    def __init__(
        self,
        runner: FakeRunner | None = None,
        *,
        max_seqs: int = 4,
        prefill_chunk: int = 16,
        max_queue: int = 16,
        prefix_cache: bool = True,
        share_prefixes: bool = True,
        cache_seqs: int = 0,
        cache_tokens: int = 0,
        cache_in_host: bool = False,
        draft: FakeRunner | None = None,
    ) -> None:
        self.tokenizer = ByteTokenizer()
        self.draft = draft  # the draft model's runner (speculative method "draft")
        self.runner = runner or FakeRunner(max_seqs=max_seqs + cache_seqs)
        vocab = Vocabulary(
            pieces=[self.tokenizer.token_bytes(i) for i in range(self.tokenizer.vocab_size)],
            special_ids=frozenset(range(256, self.tokenizer.vocab_size)),
            eog_ids=self.tokenizer.eog_token_ids,
        )
        config = SchedulerConfig(
            max_seqs=max_seqs,
            prefill_chunk=prefill_chunk,
            max_queue=max_queue,
            prefix_cache=prefix_cache,
            share_prefixes=share_prefixes,
            cache_seqs=cache_seqs,
            cache_tokens=cache_tokens,
            cache_in_host=cache_in_host,
        )
        drafter = ModelDrafter(draft) if draft is not None else None
        self.scheduler = Scheduler(self.runner, vocab, config, self._emit, drafter)
        self.collectors: list[Collector] = []
        self._ids = itertools.count()

    @staticmethod
    def _emit(batch: Sequence[tuple[Callable[[Any], None], Any]]) -> None:
        for sink, item in batch:
            sink(item)

    def submit(
        self, prompt: str | bytes | list[int], *, priority: int = 0, **sampling: Any
    ) -> Collector:
        """Queue a request (greedy unless ``temperature`` is given); returns its sink."""
        tokens = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        sampling.setdefault("temperature", 0.0)
        request = GenerationRequest(
            request_id=f"r{next(self._ids)}",
            prompt_tokens=tokens,
            sampling=SamplingParams(**sampling),
            priority=priority,
        )
        sink = Collector()
        sink.active = self.scheduler.submit(request, sink)
        self.collectors.append(sink)
        return sink

    def abort(self, sink: Collector) -> None:
        assert sink.active is not None
        sink.aborted = True
        self.scheduler.abort(sink.active)

    def slot_of(self, sink: Collector, index: int = 0) -> int:
        """The KV sequence id that choice ``index`` of a running request decodes into."""
        assert sink.active is not None
        return sink.active.sequences[index].slot

    def step(self) -> None:
        self.scheduler.run(_OneStep())  # type: ignore[arg-type]
        assert not self.runner.violations, self.runner.violations
        assert self.draft is None or not self.draft.violations, self.draft.violations

    def run(self, max_steps: int = 500) -> int:
        """Step until every request not aborted has ended; returns the number of steps."""
        for steps in range(max_steps):
            if all(c.closed or c.aborted for c in self.collectors):
                return steps
            self.step()
        raise AssertionError(f"requests still running after {max_steps} steps")
