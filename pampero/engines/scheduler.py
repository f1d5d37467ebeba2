"""Continuous batching over a batch runner, on one dedicated thread.

Every step: take in new requests and aborts, admit waiting requests into free sequence slots
(lowest ``priority`` value first, then arrival), build one batch with one token for every
decoding sequence plus prompt chunks of prefilling sequences (at most ``prefill_chunk`` tokens
each, so a long prompt never stalls running streams for long), decode it once, sample every
sequence that got logits, check stops, and hand each request its step's deltas.

KV memory is organised in ``max_seqs`` slots (llama.cpp sequence ids). A finished sequence's slot
keeps its tokens in KV; a new prompt takes the free slot that shares its longest prefix and only
decodes the rest (``prefix_cache``). A prompt can also borrow a prefix from any other slot, busy
or not, or from the prefix cache beyond the slots, and the ``n`` choices of one request share
one prefill.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pampero.engines.beam import BeamSearch
from pampero.engines.choice import ChoiceOutput, ChoiceVocabulary, new_text
from pampero.engines.drafter import ModelDrafter
from pampero.engines.prefix_cache import (
    MIN_ENTRY_TOKENS,
    EntryStore,
    HostStore,
    KvStore,
    PrefixCache,
)
from pampero.engines.sequence import IMAGE_CELL, ActiveRequest, Phase, Sequence, Sink
from pampero.engines.speculative import ngram_draft
from pampero.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequestError,
    Overloaded,
    PamperoError,
)
from pampero.inference import (
    IMAGE_PLACEHOLDER_ID,
    EngineEvent,
    EngineStats,
    GenerationRequest,
    SpeculativeParams,
    TokenLogprob,
)
from pampero.sampling.sampler import logprobs_of

log = logging.getLogger(__name__)

Emission = list[tuple[Sink, EngineEvent | BaseException | None]]

# A prompt_logprobs request keeps every prompt row's logits (n_vocab floats each): cap its chunk.
_PROMPT_LOGPROB_CHUNK = 64
_FIRST_DRAFT = 4  # a sequence's first speculative step drafts at most this many tokens
_MAX_PAUSE = 16  # steps without drafts after a run of fully rejected drafts


class BatchRunner(Protocol):
    """What the scheduler needs from a model (see ``pampero.engines.llamacpp.runner``)."""

    n_batch: int
    n_ctx_seq: int
    n_vocab: int

    def decode(
        self,
        tokens: npt.NDArray[np.int32],
        positions: npt.NDArray[np.int32],
        seq_ids: npt.NDArray[np.int32],
        want_logits: npt.NDArray[np.int8],
    ) -> npt.NDArray[np.float32]: ...

    def seq_remove(self, seq_id: int, start: int = 0, end: int = -1) -> None: ...

    def seq_copy(self, src: int, dst: int, end: int = -1) -> None: ...

    def seq_save(self, seq_id: int) -> Any: ...  # a sequence's KV, serialised in host memory

    def seq_load(self, data: Any, dst: int) -> None: ...


Vocabulary = ChoiceVocabulary  # token bytes, control and end-of-generation tokens


@dataclass
class SchedulerConfig:
    max_seqs: int
    prefill_chunk: int
    max_queue: int
    prefix_cache: bool = True
    share_prefixes: bool = True  # copy prefixes between sequences (whole streams when split)
    speculative: SpeculativeParams | None = None  # for requests that do not choose
    # The prefix cache beyond the slots, holding at most cache_tokens tokens (needs
    # share_prefixes): in sequence ids max_seqs.. max_seqs + cache_seqs - 1 of the KV buffer,
    # or with cache_in_host, serialised in host memory (for split KV buffers).
    cache_seqs: int = 0
    cache_tokens: int = 0
    cache_in_host: bool = False


@dataclass
class _Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # KV holds tokens[:n_cached]
    n_cached: int = 0
    busy: bool = False


@dataclass
class _Row:
    sequence: Sequence
    position: int
    samples: bool  # the row's logits choose the next token (else: a prompt-logprob row)
    draft: int = 0  # a speculating sequence's row: 0 for its last token, j for its j-th draft


class Scheduler:
    """Owns the runner; ``run`` is the engine thread's body, the rest is thread-safe."""

    def __init__(
        self,
        runner: BatchRunner,
        vocab: Vocabulary,
        config: SchedulerConfig,
        emit: Callable[[Emission], None],
        drafter: ModelDrafter | None = None,
    ) -> None:
        self.runner = runner
        self.drafter = drafter  # speculative method "draft": a draft model's proposals
        self.vocab = vocab
        self.config = config
        self._emit = emit
        self._inbox: queue.SimpleQueue[tuple[str, ActiveRequest]] = queue.SimpleQueue()
        self._waiting: list[tuple[tuple[int, int], ActiveRequest]] = []
        self._running: list[ActiveRequest] = []
        self._slots = [_Slot(i) for i in range(config.max_seqs)]
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._queued = 0  # submitted, not yet admitted (guarded by _lock)
        self._free_slots = config.max_seqs  # approximate, read by submitters
        self._wake = threading.Event()
        self._outbox: Emission = []
        # The logits flags of a step's decoding rows, all 1: sliced, not made, each step.
        self._ones = np.ones(max(runner.n_batch, config.max_seqs), dtype=np.int8)
        self._ones.flags.writeable = False
        self._cache: PrefixCache | None = None
        if config.prefix_cache and config.share_prefixes and config.cache_tokens:
            store: EntryStore | None = None
            if config.cache_in_host:
                store = HostStore(runner)
            elif config.cache_seqs:
                ids = range(config.max_seqs, config.max_seqs + config.cache_seqs)
                store = KvStore(runner, ids)
            if store is not None:
                self._cache = PrefixCache(store, config.cache_tokens)

    # -- any thread ---------------------------------------------------------------------------

    def submit(self, generation: GenerationRequest, sink: Sink) -> ActiveRequest:
        """Queue a request. Raises ``Overloaded`` or ``ContextLengthExceeded`` at once."""
        return self.submit_batch([(generation, sink)])[0]

    def submit_batch(self, batch: list[tuple[GenerationRequest, Sink]]) -> list[ActiveRequest]:
        """Queue every request of ``batch`` or none: each is checked first, then the queue must
        hold them all (``Overloaded`` otherwise), so a refused batch leaves nothing behind."""
        for generation, _ in batch:
            self._check(generation)
        limit = self.config.max_queue + self.config.max_seqs
        if len(batch) > limit:
            raise InvalidRequestError(
                f"a batch of {len(batch)} prompts is more than this server can hold at once "
                f"({limit}: --max-seqs plus --max-queue); send fewer prompts per request",
                param="prompt",
            )
        with self._lock:
            if self._queued + len(batch) - self._free_slots > self.config.max_queue:
                raise Overloaded(
                    f"the server is at capacity ({self._queued} requests waiting); retry shortly"
                )
            self._queued += len(batch)
        requests = [
            ActiveRequest(generation=generation, sink=sink, order=next(self._order))
            for generation, sink in batch
        ]
        for request in requests:
            self._inbox.put(("submit", request))
        self._wake.set()
        return requests

    def _check(self, generation: GenerationRequest) -> None:
        n_prompt = len(generation.prompt_tokens)
        param = generation.prompt_param
        if n_prompt == 0:
            raise InvalidRequestError("the prompt is empty", param=param)
        self._check_tokens(generation)
        if generation.sampling.n > self.config.max_seqs:
            raise InvalidRequestError(
                f"n={generation.sampling.n} exceeds the {self.config.max_seqs} sequences this "
                "server decodes at once (--max-seqs)",
                param="n",
            )
        self._check_images(generation)
        if n_prompt >= self.runner.n_ctx_seq:
            raise ContextLengthExceeded(
                f"the prompt has {n_prompt} tokens; this model's context is "
                f"{self.runner.n_ctx_seq} tokens and at least one must be left to generate",
                param=param,
            )

    def _check_tokens(self, generation: GenerationRequest) -> None:
        """Every prompt token is in the vocabulary (or an image place): llama.cpp fails the
        whole batch on one bad id, which would fail every request decoding beside it."""
        tokens = np.asarray(generation.prompt_tokens, dtype=np.int64)
        bad = np.flatnonzero(
            ((tokens < 0) | (tokens >= self.runner.n_vocab)) & (tokens != IMAGE_PLACEHOLDER_ID)
        )
        if len(bad):
            raise InvalidRequestError(
                f"token id {int(tokens[bad[0]])} at position {int(bad[0])} is outside this "
                f"model's vocabulary (0..{self.runner.n_vocab - 1})",
                param=generation.prompt_param,
            )

    def _check_images(self, generation: GenerationRequest) -> None:
        places = generation.prompt_tokens.count(IMAGE_PLACEHOLDER_ID)
        if not generation.images and not places:
            return
        if not getattr(self.runner, "supports_images", False):
            raise InvalidRequestError(
                "this model does not accept image input", param=generation.prompt_param
            )
        if places != len(generation.images):
            raise EngineError(
                f"the prompt has {places} image places for {len(generation.images)} images"
            )

    def abort(self, request: ActiveRequest) -> None:
        """Stop a request within one step and free its memory."""
        request.cancelled = True
        self._inbox.put(("abort", request))
        self._wake.set()

    def stats(self) -> EngineStats:
        running = sum(
            1 for r in list(self._running) for s in r.sequences if s.phase is not Phase.DONE
        )
        used = sum(s.n_cached for s in self._slots if s.busy)
        return EngineStats(
            running=running,
            waiting=self._queued,
            kv_used_tokens=used,
            kv_capacity_tokens=self.runner.n_ctx_seq * self.config.max_seqs,
        )

    # -- engine thread ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._drain_inbox(block=not self._running and not self._waiting, stop=stop)
            self._admit()
            if not self._running:
                self._flush()  # a request refused at admission (its images) still hears back
                continue
            self._step_all()
            self._flush()

    def _drain_inbox(self, *, block: bool, stop: threading.Event) -> None:
        if block:
            self._wake.wait(timeout=0.5)
        if self._wake.is_set():  # a submit setting it after this is seen at the next wait
            self._wake.clear()
        while not self._inbox.empty():  # once per step: no exception when there is nothing
            kind, request = self._inbox.get_nowait()
            if kind == "submit":
                heapq.heappush(self._waiting, (request.sort_key(), request))
            else:
                self._cancel(request)

    def _cancel(self, request: ActiveRequest) -> None:
        waiting = [entry for entry in self._waiting if entry[1] is not request]
        if len(waiting) != len(self._waiting):  # never admitted: stop counting it as queued
            self._waiting = waiting
            heapq.heapify(self._waiting)
            self._dequeued()
        if request in self._running:
            self._running.remove(request)
            # Aborts land between steps, so the KV holds exactly what each sequence decoded:
            # keep it for the next prompt sharing the prefix (a client that closes a stream
            # and asks again must not pay the whole prefill again).
            for sequence in request.sequences:
                self._release(sequence, keep_cache=True)
            self._free_media(request)
            self._outbox.append((request.sink, None))
        self._flush()

    def _admit(self) -> None:
        if not self._waiting:  # the usual step: nothing to admit, no free-slot count to redo
            return
        while self._waiting:
            request = self._waiting[0][1]
            if request.cancelled:
                heapq.heappop(self._waiting)
                self._dequeued()
                continue
            free = [slot for slot in self._slots if not slot.busy]
            if len(free) < request.generation.sampling.n:
                break
            heapq.heappop(self._waiting)
            self._dequeued()
            try:
                request.prompt = self._expand_images(request)
            except PamperoError as error:  # this request's images, not the engine, failed
                self._outbox.append((request.sink, error))
                continue
            self._start(request, free)
            self._running.append(request)
        self._free_slots = sum(1 for slot in self._slots if not slot.busy)

    def _expand_images(self, request: ActiveRequest) -> list[int]:
        """The prompt with each image place replaced by the image's wrapping and KV cells."""
        generation = request.generation
        if not generation.images:
            return generation.prompt_tokens
        images = iter(generation.images)
        expanded: list[int] = []
        try:
            for token in generation.prompt_tokens:
                if token != IMAGE_PLACEHOLDER_ID:
                    expanded.append(token)
                    continue
                chunk = self.runner.expand_image(next(images))  # type: ignore[attr-defined]
                expanded += chunk.before
                request.media[len(expanded)] = chunk
                expanded += [IMAGE_CELL] * chunk.n_tokens
                expanded += chunk.after
            if expanded[-1] == IMAGE_CELL:
                raise InvalidRequestError(
                    "a prompt may not end with an image", param=generation.prompt_param
                )
            if len(expanded) >= self.runner.n_ctx_seq:
                raise ContextLengthExceeded(
                    f"with its images the prompt has {len(expanded)} tokens; this model's "
                    f"context is {self.runner.n_ctx_seq} tokens",
                    param=generation.prompt_param,
                )
        except BaseException:
            self._free_media(request)
            raise
        return expanded

    def _free_media(self, request: ActiveRequest) -> None:
        for chunk in request.media.values():
            chunk.release()
        request.media.clear()

    def _dequeued(self) -> None:
        with self._lock:
            self._queued -= 1

    def _start(self, request: ActiveRequest, free: list[_Slot]) -> None:
        generation = request.generation
        prompt = request.prompt
        params = generation.sampling
        # A seeded request recomputes its prompt: reused KV was computed in other batch shapes,
        # and its slightly different logits would make the same seed give another output.
        reuse = self.config.prefix_cache and params.prompt_logprobs is None and params.seed is None
        # Prefer the slot sharing the longest prefix; among equals, the one caching least.
        primary = max(free, key=lambda s: (_common_prefix(s, prompt) if reuse else 0, -s.n_cached))
        n_past = self._reuse_prefix(primary, prompt) if reuse else 0
        if not reuse:
            self._spill(primary, 0)
            self.runner.seq_remove(primary.seq_id)
        request.cached_tokens = n_past
        if params.prompt_logprobs is not None:
            request.prompt_logprobs = [None] * len(prompt)
        others = sorted((s for s in free if s is not primary), key=lambda s: s.n_cached)
        slots = [primary, *others[: params.n - 1]]
        for index, slot in enumerate(slots):
            slot.busy = True
            if index:
                self._spill(slot, 0)
                self.runner.seq_remove(slot.seq_id)
            request.sequences.append(
                self._new_sequence(request, index, slot, n_past if not index else 0)
            )
        if params.use_beam_search:
            request.beam = BeamSearch(
                request.sequences,
                params,
                end_ids=self.vocab.eog_ids,
                n_ctx=self.runner.n_ctx_seq,
                new_text=lambda: new_text(params, self.vocab),
                copy_kv=self._copy_kv,
            )

    def _copy_kv(self, src: int, dst: int) -> None:
        self.runner.seq_remove(dst)
        self.runner.seq_copy(src, dst)

    def _reuse_prefix(self, primary: _Slot, prompt: list[int]) -> int:
        """Put the longest available cached prefix of ``prompt`` into ``primary``'s KV."""
        limit = len(prompt) - 1  # the last prompt token is always decoded: it gives the logits
        best, best_len = primary, min(_common_prefix(primary, prompt), limit)
        if self.config.share_prefixes:
            for slot in self._slots:
                length = min(_common_prefix(slot, prompt), limit)
                if slot is not primary and length > best_len:
                    best, best_len = slot, length
        cached, cached_len = self._cache.match(prompt, limit) if self._cache else (-1, 0)
        if self._cache is not None and cached_len > best_len:
            self._spill(primary, 0, protect=cached)
            self.runner.seq_remove(primary.seq_id)
            self._cache.restore(cached, primary.seq_id, cached_len)
            return cached_len
        self._spill(primary, best_len if best is primary else 0)
        if best is primary:
            self.runner.seq_remove(primary.seq_id, best_len, -1)
        else:
            self.runner.seq_remove(primary.seq_id)
            self.runner.seq_copy(best.seq_id, primary.seq_id, best_len)
        return best_len

    def _spill(self, slot: _Slot, keep: int, protect: int = -1) -> None:
        """Before ``slot`` drops what it holds past ``keep`` tokens, let the prefix cache keep
        its whole history (a conversation that another one displaces from its slot)."""
        if self._cache is not None and slot.n_cached > keep and slot.n_cached >= MIN_ENTRY_TOKENS:
            self._cache.keep(slot.seq_id, slot.tokens[: slot.n_cached], protect)

    def _new_sequence(
        self, request: ActiveRequest, index: int, slot: _Slot, n_past: int
    ) -> Sequence:
        params = request.generation.sampling
        prompt = request.prompt
        slot.tokens = list(prompt)
        slot.n_cached = n_past
        return Sequence(
            request=request,
            slot=slot.seq_id,
            tokens=slot.tokens,
            n_past=n_past,
            choice=ChoiceOutput.start(
                params,
                prompt,
                self.vocab,
                vocab_size=self.runner.n_vocab,
                n_ctx=self.runner.n_ctx_seq,
                index=index,
            ),
            phase=Phase.PREFILL if index == 0 else Phase.WAITING_SIBLING,
        )

    # -- one step -----------------------------------------------------------------------------

    def _step_all(self) -> None:
        """One step for every running request. The engine outlives a bad step, and so do the
        requests that did not cause it: when the batch fails, each request is stepped again on
        its own, and only those that fail alone are failed."""
        requests = list(self._running)
        marks = _marks(requests)
        try:
            self._step(requests)
        except Exception as exc:
            if len(requests) == 1:
                log.exception("engine step failed")
                self._fail(requests[0], exc)
            else:
                log.warning(
                    "a batch of %d requests failed (%s); retrying each alone", len(requests), exc
                )
                self._rewind(marks)
                for request in requests:
                    try:
                        self._step([request])
                    except Exception as alone:
                        log.exception("engine step failed")
                        self._fail(request, alone)
        self._collect()

    def _rewind(self, marks: list[tuple[Sequence, int, Phase, int]]) -> None:
        """Put sequences back where they were before a failed decode, KV included."""
        for s, n_past, phase, pos_shift in marks:
            if s.n_past != n_past:
                self.runner.seq_remove(s.slot, n_past - pos_shift, -1)
            s.n_past, s.phase, s.pos_shift = n_past, phase, pos_shift

    def _step(self, requests: list[ActiveRequest]) -> None:
        rows, tokens, positions, seq_ids, want = self._build_batch(requests)
        if not rows and not len(tokens):
            return
        logits = self.runner.decode(tokens, positions, seq_ids, want)
        self._consume(rows, logits)
        self._settle_drafts(rows)

    def _build_batch(
        self, requests: list[ActiveRequest]
    ) -> tuple[
        list[_Row],
        npt.NDArray[np.int32],
        npt.NDArray[np.int32],
        npt.NDArray[np.int32],
        npt.NDArray[np.int8],
    ]:
        rows: list[_Row] = []
        tok: list[npt.NDArray[np.int32]] = []
        pos: list[npt.NDArray[np.int32]] = []
        sid: list[npt.NDArray[np.int32]] = []
        out: list[npt.NDArray[np.int8]] = []
        # In slot order: llama.cpp reuses the last step's compute graph only when the batch
        # holds the same sequences in the same order (with a split KV buffer; a unified one
        # does not look), and rebuilding it costs a split-KV step about a fifth of its time.
        decoding = sorted(
            (s for r in requests for s in r.sequences if s.phase is Phase.DECODE),
            key=lambda s: s.slot,
        )
        budget = self._draft(decoding, self.runner.n_batch - len(decoding))
        speculating = [s for s in decoding if s.drafts]
        if speculating:
            decoding = [s for s in decoding if not s.drafts]
        if decoding:
            tok.append(np.fromiter((s.tokens[-1] for s in decoding), np.int32, len(decoding)))
            pos.append(
                np.fromiter((s.n_past - s.pos_shift for s in decoding), np.int32, len(decoding))
            )
            sid.append(np.fromiter((s.slot for s in decoding), np.int32, len(decoding)))
            out.append(self._ones[: len(decoding)])
            for s in decoding:
                rows.append(_Row(s, s.n_past, True))
                s.n_past += 1
        for s in speculating:
            window = np.asarray([s.tokens[-1], *s.drafts], dtype=np.int32)
            n = len(window)
            tok.append(window)
            pos.append(
                np.arange(s.n_past - s.pos_shift, s.n_past - s.pos_shift + n, dtype=np.int32)
            )
            sid.append(np.full(n, s.slot, dtype=np.int32))
            out.append(np.ones(n, dtype=np.int8))
            rows.extend(_Row(s, s.n_past + j, True, j) for j in range(n))
            s.n_past += 1
            s.spec_open = True
        for request in requests:
            for s in request.sequences:
                if s.phase is not Phase.PREFILL or budget <= 0:
                    continue
                taken = self._add_prefill(s, budget, rows, tok, pos, sid, out)
                budget -= taken
        if not tok:
            empty = np.empty(0, dtype=np.int32)
            return rows, empty, empty, empty, np.empty(0, dtype=np.int8)
        if len(tok) == 1:  # the usual step: decoding sequences only
            return rows, tok[0], pos[0], sid[0], out[0]
        return (
            rows,
            np.concatenate(tok),
            np.concatenate(pos),
            np.concatenate(sid),
            np.concatenate(out),
        )

    def _draft(self, decoding: list[Sequence], budget: int) -> int:
        """Give each speculating sequence its drafts for this step, within ``budget`` batch
        rows; what is left of the budget goes to prefill."""
        by_model: list[tuple[Sequence, int]] = []  # drafted together by the draft model
        for s in decoding:
            s.drafts = []
            s.spec_open = False
            spec = self._speculation(s)
            if spec is None or budget <= 0:
                continue
            if s.draft_wait > 0:
                s.draft_wait -= 1
                continue
            if not s.draft_len:
                s.draft_len = min(spec.num_tokens, _FIRST_DRAFT)
            room = min(s.draft_len, spec.num_tokens, budget, self._draft_room(s))
            if room <= 0:
                continue
            if spec.method == "draft":
                # The draft model reads tokens only, at positions equal to their indices.
                if self.drafter is not None and not s.request.media and not s.pos_shift:
                    by_model.append((s, room))
                    budget -= room
            else:
                s.drafts = ngram_draft(s.tokens, room)
                budget -= len(s.drafts)
        if by_model and self.drafter is not None:
            wanted = [(s.slot, s.tokens, room) for s, room in by_model]
            for (s, room), drafts in zip(by_model, self.drafter.propose(wanted), strict=True):
                s.drafts = drafts
                budget += room - len(drafts)
        return budget

    def _speculation(self, s: Sequence) -> SpeculativeParams | None:
        request = s.request
        spec = request.generation.sampling.speculative or self.config.speculative
        if spec is None or not spec.enabled or request.beam is not None:
            return None
        return spec

    def _draft_room(self, s: Sequence) -> int:
        """Drafts worth decoding: the step yields up to one token more than it drafts, and
        neither the token budget nor the context may be overrun."""
        room = self.runner.n_ctx_seq - 1 - s.n_past
        limit = s.choice.params.max_tokens
        if limit is not None:
            room = min(room, limit - len(s.output_ids) - 1)
        return room

    def _settle_drafts(self, rows: list[_Row]) -> None:
        """Drop the KV of rejected drafts and count what was drafted and accepted."""
        for row in rows:
            s = row.sequence
            if row.draft or not s.drafts:
                continue
            self.runner.seq_remove(s.slot, s.n_past - s.pos_shift, -1)
            accepted = s.n_past - row.position - 1  # the rows after the last token that held
            s.draft_len = 2 * len(s.drafts) if accepted == len(s.drafts) else accepted + 1
            if accepted:
                s.draft_pause = 1
            else:
                s.draft_wait, s.draft_pause = s.draft_pause, min(2 * s.draft_pause, _MAX_PAUSE)
            s.request.drafted += len(s.drafts)
            s.drafts = []
            s.spec_open = False

    def _add_prefill(
        self,
        s: Sequence,
        budget: int,
        rows: list[_Row],
        tok: list[npt.NDArray[np.int32]],
        pos: list[npt.NDArray[np.int32]],
        sid: list[npt.NDArray[np.int32]],
        out: list[npt.NDArray[np.int8]],
    ) -> int:
        wants_prompt_lp = s.request.prompt_logprobs is not None
        limit = _PROMPT_LOGPROB_CHUNK if wants_prompt_lp else self.config.prefill_chunk
        self._evaluate_images(s)
        count = min(self._next_image(s) - s.n_past, limit, budget)
        start = s.n_past
        positions = np.arange(start, start + count, dtype=np.int32)
        flags = np.zeros(count, dtype=np.int8)
        if wants_prompt_lp:
            flags[:] = 1
            rows.extend(_Row(s, int(p), False) for p in positions[:-1])
        if start + count == s.n_prompt:
            flags[-1] = 1
            rows.append(_Row(s, s.n_prompt - 1, True))
            s.phase = Phase.DECODE
            for other in s.request.sequences:  # choices and beams share this prompt's KV
                other.pos_shift = s.pos_shift
        elif wants_prompt_lp:
            rows.append(_Row(s, int(positions[-1]), False))
        tok.append(np.asarray(s.tokens[start : start + count], dtype=np.int32))
        pos.append(positions - np.int32(s.pos_shift))
        sid.append(np.full(count, s.slot, dtype=np.int32))
        out.append(flags)
        s.n_past += count
        return count

    def _evaluate_images(self, s: Sequence) -> None:
        """Decode the images that come next in ``s``'s prompt (each in its own llama.cpp call)."""
        media = s.request.media
        while s.n_past in media:
            chunk = media[s.n_past]
            self.runner.evaluate_image(chunk, s.slot, s.n_past - s.pos_shift)  # type: ignore[attr-defined]
            s.n_past += chunk.n_tokens
            s.pos_shift += chunk.n_tokens - chunk.n_pos

    def _next_image(self, s: Sequence) -> int:
        """Where the text now being prefilled ends: the next image, or the prompt's end."""
        later = [start for start in s.request.media if start > s.n_past]
        return min(later, default=s.n_prompt)

    def _consume(self, rows: list[_Row], logits: npt.NDArray[np.float32]) -> None:
        greedy = [
            i
            for i, r in enumerate(rows)
            if r.samples and r.sequence.sampler.plain_greedy and r.sequence.request.beam is None
        ]
        chosen: dict[int, int] = {}
        if greedy:
            picks = np.argmax(logits[greedy], axis=1)
            chosen = dict(zip(greedy, (int(p) for p in picks), strict=True))
        beams: dict[int, tuple[BeamSearch, dict[int, npt.NDArray[np.float32]]]] = {}
        failed: set[int] = set()
        for i, row in enumerate(rows):
            s = row.sequence
            if id(s.request) in failed:
                continue
            try:
                self._consume_row(s, row, logits[i], chosen.get(i), beams)
            except Exception as exc:  # this request's sampling failed, not the batch
                log.exception("sampling failed for one request")
                failed.add(id(s.request))
                self._fail(s.request, exc)
        for beam, beam_rows in beams.values():
            request = beam.sequences[0].request
            if id(request) in failed:
                continue
            try:
                beam.step(beam_rows)
            except Exception as exc:
                log.exception("beam search step failed for one request")
                self._fail(request, exc)

    def _consume_row(
        self,
        s: Sequence,
        row: _Row,
        logits: npt.NDArray[np.float32],
        greedy_pick: int | None,
        beams: dict[int, tuple[BeamSearch, dict[int, npt.NDArray[np.float32]]]],
    ) -> None:
        if not row.samples:
            self._prompt_logprob(s, row.position, logits)
            return
        if s.phase is Phase.DONE:
            return
        if row.draft:
            if not s.spec_open:  # an earlier row of this window rejected its draft
                return
            s.n_past += 1  # the draft decoded at this row's position is the sampled token
            s.request.accepted += 1
        beam = s.request.beam
        if beam is not None:
            beams.setdefault(id(beam), (beam, {}))[1][s.index] = logits
            return
        token = greedy_pick if greedy_pick is not None else s.sampler.choose(logits, s.output_ids)
        first = not s.output_ids
        self._append(s, token, logits)
        if s.drafts:
            s.spec_open = (
                row.draft < len(s.drafts) and token == s.drafts[row.draft] and not s.choice.done
            )
        if first and s.index == 0:
            self._start_siblings(s, logits)

    def _prompt_logprob(self, s: Sequence, position: int, row: npt.NDArray[np.float32]) -> None:
        plp = s.request.prompt_logprobs
        k = s.request.generation.sampling.prompt_logprobs
        if plp is None or k is None or position + 1 >= s.n_prompt:
            return
        plp[position + 1] = logprobs_of(row, s.tokens[position + 1], k)

    def _start_siblings(self, primary: Sequence, row: npt.NDArray[np.float32]) -> None:
        for sibling in primary.request.sequences[1:]:
            if sibling.phase is not Phase.WAITING_SIBLING:
                continue
            self.runner.seq_copy(primary.slot, sibling.slot, primary.n_prompt)
            sibling.n_past = primary.n_prompt
            sibling.pos_shift = primary.pos_shift
            self._slots[sibling.slot].n_cached = primary.n_prompt
            sibling.phase = Phase.DECODE
            self._append(sibling, sibling.sampler.choose(row, sibling.output_ids), row)

    def _append(self, s: Sequence, token: int, row: npt.NDArray[np.float32]) -> None:
        """Give a sampled token to the sequence's choice (stops, constraint, text)."""
        s.choice.append(token, row)
        if token >= 0:
            s.tokens.append(token)
        self._slots[s.slot].n_cached = s.n_past
        if s.choice.done:
            s.phase = Phase.DONE

    def _collect(self) -> None:
        """Queue each running request's deltas for this step; retire finished requests."""
        still: list[ActiveRequest] = []
        for request in self._running:
            deltas = [d for s in request.sequences if (d := s.delta()) is not None]
            if deltas:
                event = EngineEvent(
                    deltas=deltas,
                    prompt_tokens=len(request.prompt),
                    cached_tokens=request.cached_tokens,
                    prompt_logprobs=None if request.sent_first else request.prompt_logprobs,
                    draft_tokens=request.drafted,
                    accepted_draft_tokens=request.accepted,
                )
                request.sent_first = True
                self._outbox.append((request.sink, event))
            if request.done:
                for s in request.sequences:
                    self._release(s, keep_cache=True)
                self._free_media(request)
                self._outbox.append((request.sink, None))
            else:
                still.append(request)
        self._running = still

    def _release(self, s: Sequence, *, keep_cache: bool) -> None:
        slot = self._slots[s.slot]
        slot.busy = False
        if keep_cache:
            slot.n_cached = min(s.n_past, len(s.tokens))
        else:
            self.runner.seq_remove(slot.seq_id)
            slot.tokens, slot.n_cached = [], 0
        self._free_slots = sum(1 for x in self._slots if not x.busy)

    def _fail(self, request: ActiveRequest, exc: Exception) -> None:
        """End one request with ``exc``; its sequences' KV is dropped."""
        if request not in self._running:
            return
        error = exc if isinstance(exc, PamperoError) else EngineError(f"generation failed: {exc}")
        self._running.remove(request)
        for s in request.sequences:
            self._release(s, keep_cache=False)
        self._free_media(request)
        self._outbox.append((request.sink, error))

    def fail_all(self, error: BaseException) -> None:
        """Called once when the engine thread is going away."""
        for request in self._running:
            self._outbox.append((request.sink, error))
        for _, request in self._waiting:
            self._outbox.append((request.sink, error))
        self._running, self._waiting = [], []
        self._flush()

    def _flush(self) -> None:
        if self._outbox:
            batch, self._outbox = self._outbox, []
            self._emit(batch)


def _marks(requests: list[ActiveRequest]) -> list[tuple[Sequence, int, Phase, int]]:
    """Where each sequence stands before a step, to rewind it if the step's decode fails."""
    return [(s, s.n_past, s.phase, s.pos_shift) for r in requests for s in r.sequences]


def _common_prefix(slot: _Slot, prompt: list[int]) -> int:
    cached = slot.tokens
    limit = min(slot.n_cached, len(prompt))
    n = 0
    while n < limit and cached[n] == prompt[n] and prompt[n] >= 0:
        n += 1
    return n


__all__ = ["BatchRunner", "Scheduler", "SchedulerConfig", "TokenLogprob", "Vocabulary"]
