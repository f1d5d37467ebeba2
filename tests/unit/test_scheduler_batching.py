"""Continuous batching, prefill chunking, prefix reuse and admission, over ``FakeRunner``.

The fake runner checks every KV operation (contiguous positions, trims, copies) and derives its
logits from each sequence's KV contents, so a scheduler that decodes into the wrong place either
trips an assertion inside the runner or produces outputs that differ from ``runner.expected``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pampero.errors import ContextLengthExceeded, EngineError, InvalidRequestError, Overloaded
from tests.fakes import Collector, FakeRunner, SchedulerHarness


def encode(text: str) -> list[int]:
    return list(text.encode())


def assert_greedy(h: SchedulerHarness, sink: Collector, prompt: str | list[int], n: int) -> None:
    tokens = encode(prompt) if isinstance(prompt, str) else prompt
    assert sink.error is None
    assert sink.token_ids() == h.runner.expected(tokens, n)


def test_one_request_gets_one_prefill_step_then_one_step_per_token() -> None:
    h = SchedulerHarness()
    sink = h.submit("hello", max_tokens=6)
    h.run()
    assert_greedy(h, sink, "hello", 6)
    assert sink.text() == bytes(sink.token_ids()).decode()
    assert sink.finish() == ("length", None)
    assert [len(batch) for batch in h.runner.batches] == [5, 1, 1, 1, 1, 1]
    assert all(len(e.deltas) == 1 and len(e.deltas[0].token_ids) == 1 for e in sink.events)


def test_a_request_submitted_mid_flight_joins_at_the_next_step() -> None:
    h = SchedulerHarness(max_seqs=2)
    first = h.submit("the first prompt", max_tokens=8)
    h.step()
    h.step()
    second = h.submit("second", max_tokens=3)
    h.step()
    rows = h.runner.batches[-1]
    by_seq = {slot: [r for r in rows if r.seq_id == slot] for slot in {r.seq_id for r in rows}}
    assert len(by_seq[h.slot_of(first)]) == 1  # the running sequence kept decoding
    assert len(by_seq[h.slot_of(second)]) == len("second")  # the newcomer's whole prompt
    assert len(second.token_ids()) == 1  # and its first token, in the same step
    h.run()
    assert_greedy(h, first, "the first prompt", 8)
    assert_greedy(h, second, "second", 3)
    assert len(first.events) == 8  # one event per step: the stream never stalled


def test_a_long_prompt_is_prefilled_in_chunks_between_decode_steps() -> None:
    runner = FakeRunner(n_batch=16, max_seqs=2)
    h = SchedulerHarness(runner, max_seqs=2, prefill_chunk=6)
    running = h.submit("ab", max_tokens=12)
    h.step()
    long_prompt = "0123456789" * 4
    late = h.submit(long_prompt, max_tokens=2)
    h.run()
    assert all(len(batch) <= 16 for batch in runner.batches)
    late_rows = runner.rows_of(h.slot_of(late))
    running_rows = runner.rows_of(h.slot_of(running))
    chunks = [i for i, rows in enumerate(late_rows) if len(rows) > 1]
    assert [len(late_rows[i]) for i in chunks] == [6, 6, 6, 6, 6, 6, 4]
    assert all(len(running_rows[i]) == 1 for i in chunks)  # a decode step in every chunk's batch
    assert_greedy(h, running, "ab", 12)
    assert_greedy(h, late, long_prompt, 2)


def test_prompts_prefilling_together_share_the_batch_budget() -> None:
    runner = FakeRunner(n_batch=16, max_seqs=3)
    h = SchedulerHarness(runner, max_seqs=3, prefill_chunk=12)
    prompts = [c * 20 for c in "pqr"]
    sinks = [h.submit(p, max_tokens=3) for p in prompts]
    h.run()
    assert max(len(batch) for batch in runner.batches) == 16
    first = runner.batches[0]
    assert [sum(r.seq_id == h.slot_of(s) for r in first) for s in sinks] == [12, 4, 0]
    for sink, prompt in zip(sinks, prompts, strict=True):
        assert_greedy(h, sink, prompt, 3)


def test_a_finished_prompts_prefix_is_reused_and_the_rest_trimmed() -> None:
    h = SchedulerHarness(max_seqs=1)
    h.submit("shared prefix, then A and more", max_tokens=3)
    h.run()
    done = len(h.runner.batches)
    prompt = "shared prefix, then B"
    second = h.submit(prompt, max_tokens=3)
    h.run()
    common = len("shared prefix, then ")
    assert second.events[0].cached_tokens == common
    assert [r.position for r in h.runner.batches[done]] == list(range(common, len(prompt)))
    assert_greedy(h, second, prompt, 3)


def test_a_follow_up_reuses_the_previous_answer_but_not_its_undecoded_last_token() -> None:
    h = SchedulerHarness(max_seqs=2)
    first = h.submit("question?", max_tokens=4)
    h.run()
    history = encode("question?") + first.token_ids()
    follow_up = [*history, *encode(" and?")]
    second = h.submit(follow_up, max_tokens=2)
    h.run()
    assert second.events[0].cached_tokens == len(history) - 1
    assert_greedy(h, second, follow_up, 2)


def test_an_identical_prompt_still_decodes_its_last_token_for_logits() -> None:
    h = SchedulerHarness(max_seqs=1)
    first = h.submit("same prompt", max_tokens=3)
    h.run()
    done = len(h.runner.batches)
    again = h.submit("same prompt", max_tokens=3)
    h.run()
    assert again.events[0].cached_tokens == len("same prompt") - 1
    assert len(h.runner.batches[done]) == 1
    assert again.token_ids() == first.token_ids()


def test_prefix_cache_off_recomputes_everything() -> None:
    h = SchedulerHarness(max_seqs=1, prefix_cache=False)
    h.submit("same prompt", max_tokens=2)
    h.run()
    again = h.submit("same prompt", max_tokens=2)
    h.run()
    assert again.events[0].cached_tokens == 0
    assert_greedy(h, again, "same prompt", 2)


@pytest.mark.parametrize("share", [True, False])
def test_a_prompt_borrows_a_running_sequences_prefix_only_with_a_unified_kv(share: bool) -> None:
    h = SchedulerHarness(max_seqs=2, share_prefixes=share)
    a = h.submit("common system prompt: one", max_tokens=10)
    h.step()
    h.step()
    b = h.submit("common system prompt: two", max_tokens=3)
    h.run()
    assert b.events[0].cached_tokens == (len("common system prompt: ") if share else 0)
    assert_greedy(h, a, "common system prompt: one", 10)
    assert_greedy(h, b, "common system prompt: two", 3)


def test_n_choices_share_one_prefill_and_keep_their_own_kv() -> None:
    h = SchedulerHarness(max_seqs=3)
    prompt = encode("a prompt of some length")
    sink = h.submit(prompt, n=3, max_tokens=5, temperature=1.0, seed=7)
    h.run()
    prompt_rows = [r for batch in h.runner.batches for r in batch if r.position < len(prompt)]
    assert len(prompt_rows) == len(prompt)
    outputs = [sink.token_ids(i) for i in range(3)]
    assert all(len(out) == 5 for out in outputs)
    for i, out in enumerate(outputs):
        assert h.runner.kv[h.slot_of(sink, i)] == prompt + out[:-1]
        assert sink.finish(i) == ("length", None)
    assert len({tuple(out) for out in outputs}) > 1  # choices are sampled independently


def test_greedy_choices_are_identical() -> None:
    h = SchedulerHarness(max_seqs=2)
    sink = h.submit("xyz", n=2, max_tokens=4)
    h.run()
    assert sink.token_ids(0) == sink.token_ids(1) == h.runner.expected(encode("xyz"), 4)


def test_waiting_requests_are_admitted_by_priority_then_arrival() -> None:
    h = SchedulerHarness(max_seqs=1)
    busy = h.submit("busy", max_tokens=3)
    h.step()
    named = {
        "late": h.submit("p5", priority=5, max_tokens=1),
        "urgent-1": h.submit("m1a", priority=-1, max_tokens=1),
        "urgent-2": h.submit("m1b", priority=-1, max_tokens=1),
        "normal": h.submit("p0", priority=0, max_tokens=1),
        "busy": busy,
    }
    order: list[str] = []
    for _ in range(20):
        if len(order) == len(named):
            break
        h.step()
        order += [k for k, c in named.items() if c.closed and k not in order]
    assert order == ["busy", "urgent-1", "urgent-2", "normal", "late"]


def test_a_full_queue_refuses_with_overloaded() -> None:
    h = SchedulerHarness(max_seqs=1, max_queue=1)
    h.submit("a", max_tokens=2)  # will take the free slot
    h.submit("b", max_tokens=2)  # will wait
    with pytest.raises(Overloaded) as refused:
        h.submit("c", max_tokens=1)
    assert refused.value.status_code == 429
    h.run()
    assert all(c.closed and c.error is None for c in h.collectors)
    h.submit("c", max_tokens=1)  # room again


def test_the_queue_limit_holds_while_every_slot_is_busy() -> None:
    h = SchedulerHarness(max_seqs=1, max_queue=1)
    h.submit("a", max_tokens=5)
    h.submit("b", max_tokens=2)
    h.step()  # a runs in the only slot, b waits: the queue is full
    with pytest.raises(Overloaded):
        h.submit("c", max_tokens=1)


def test_requests_that_can_never_run_are_refused_at_submission() -> None:
    h = SchedulerHarness(FakeRunner(n_ctx_seq=16), max_seqs=2)
    with pytest.raises(InvalidRequestError) as too_many:
        h.submit("hi", n=3)
    assert too_many.value.param == "n"
    with pytest.raises(ContextLengthExceeded):
        h.submit("x" * 16)
    with pytest.raises(InvalidRequestError):
        h.submit([])
    fits = h.submit("x" * 15)  # one position left: exactly one token
    h.run()
    assert len(fits.token_ids()) == 1
    assert fits.finish() == ("length", None)


def test_abort_frees_the_slot_within_one_step() -> None:
    h = SchedulerHarness(max_seqs=1)
    first = h.submit("first", max_tokens=50)
    h.step()
    h.step()
    second = h.submit("second", max_tokens=2)
    h.step()
    assert second.events == []  # the only slot is busy
    seen = len(first.events)
    h.abort(first)
    h.step()
    assert first.closed and first.error is None and len(first.events) == seen
    assert len(second.token_ids()) == 1  # admitted and prefilled in that same step
    assert h.runner.kv[h.slot_of(second)] == encode("second")
    h.run()
    assert_greedy(h, second, "second", 2)


def test_an_aborted_waiting_request_never_runs() -> None:
    h = SchedulerHarness(max_seqs=1)
    running = h.submit("running", max_tokens=3)
    waiting = h.submit("never", max_tokens=3)
    h.abort(waiting)
    h.run()
    assert running.closed and waiting.events == [] and not waiting.closed
    assert len(h.runner.batches) == 3  # the running request's steps, nothing else
    assert h.runner.kv[0] == encode("running") + running.token_ids()[:-1]
    assert h.scheduler.stats().waiting == 0


def test_a_failed_step_fails_its_requests_and_frees_their_slots() -> None:
    h = SchedulerHarness(max_seqs=2)
    a = h.submit("one", max_tokens=5)
    b = h.submit("two", max_tokens=5)
    h.step()
    h.runner.broken = RuntimeError("device lost")
    h.step()
    assert isinstance(a.error, EngineError) and isinstance(b.error, EngineError)
    assert h.runner.kv == {0: [], 1: []}
    h.runner.broken = None
    c = h.submit("three", max_tokens=2)
    h.run()
    assert_greedy(h, c, "three", 2)
    stats = h.scheduler.stats()
    assert (stats.running, stats.waiting) == (0, 0)


def test_beam_search_forks_kv_correctly_and_ranks_by_score() -> None:
    h = SchedulerHarness(max_seqs=3)
    prompt = encode("beam me")
    sink = h.submit(prompt, n=3, max_tokens=4, use_beam_search=True)
    h.run()

    def ranks(tokens: list[int]) -> list[int]:
        # 0 for the model's best token at that point, 1 for the runner-up, ... (see ``ramp``)
        context = list(prompt)
        out = []
        for token in tokens:
            out.append((token - h.runner.next_token(context)) % h.runner.n_vocab)
            context.append(token)
        return out

    beams = [sink.token_ids(i) for i in range(3)]
    assert beams[0] == h.runner.expected(prompt, 4)
    assert len({tuple(b) for b in beams}) == 3
    assert [sum(ranks(b)) for b in beams] == [0, 1, 1]  # one runner-up token each: next best
    assert all(sink.finish(i) == ("length", None) for i in range(3))


@pytest.mark.parametrize("seed", range(25))
def test_random_workloads_keep_kv_consistent_and_outputs_exact(seed: int) -> None:
    rng = random.Random(seed)
    max_seqs = rng.randint(1, 4)
    runner = FakeRunner(n_batch=rng.choice([max_seqs, 8, 64]), n_ctx_seq=32, max_seqs=max_seqs)
    h = SchedulerHarness(
        runner,
        max_seqs=max_seqs,
        prefill_chunk=rng.choice([1, 3, 16]),
        max_queue=100,
        prefix_cache=rng.random() < 0.8,
        share_prefixes=rng.random() < 0.7,
    )
    stems = [bytes(rng.choices(b"abc", k=rng.randint(1, 12))) for _ in range(3)]
    submitted: list[tuple[Collector, list[int], int]] = []
    for _ in range(40):
        if rng.random() < 0.4:
            prompt = list(rng.choice(stems) + bytes(rng.choices(b"xyz", k=rng.randint(0, 8))))
            n = rng.randint(1, max_seqs)
            options: dict[str, Any] = {"n": n, "max_tokens": rng.choice([1, 2, 5, None])}
            if rng.random() < 0.2:
                options["prompt_logprobs"] = 1
            submitted.append((h.submit(prompt, **options), prompt, n))
        if submitted and rng.random() < 0.1:
            victim = rng.choice(submitted)[0]
            if not (victim.closed or victim.aborted):
                h.abort(victim)
        if not all(c.closed or c.aborted for c in h.collectors):
            h.step()  # the fake runner asserts every KV operation on the way
    h.run(max_steps=5_000)
    for sink, prompt, n in submitted:
        if sink.aborted:
            continue
        assert sink.error is None
        for i in range(n):
            ids = sink.token_ids(i)
            assert ids == runner.expected(prompt, len(ids))
            assert len(prompt) + len(ids) <= 32


def test_a_seeded_request_recomputes_its_prompt_instead_of_reusing_cached_kv() -> None:
    h = SchedulerHarness(max_seqs=1)
    prompt = "the same prompt twice"
    first = h.submit(prompt, max_tokens=2)
    h.run()
    again = h.submit(prompt, max_tokens=2)
    h.run()
    seeded = h.submit(prompt, max_tokens=2, temperature=1.0, seed=3)
    h.run()
    assert first.events[0].cached_tokens == 0
    assert again.events[0].cached_tokens == len(encode(prompt)) - 1
    assert seeded.events[0].cached_tokens == 0


def test_a_batch_that_fails_once_is_retried_and_every_request_finishes() -> None:
    h = SchedulerHarness(max_seqs=2)
    a = h.submit("one", max_tokens=5)
    b = h.submit("two", max_tokens=5)
    h.step()
    h.runner.fail_next_decode = RuntimeError("transient")
    h.run()
    assert_greedy(h, a, "one", 5)
    assert_greedy(h, b, "two", 5)


@pytest.mark.parametrize("late", [False, True])
def test_a_request_that_breaks_the_decode_fails_alone(late: bool) -> None:
    h = SchedulerHarness(max_seqs=3)
    h.runner.poison = frozenset({ord("!")})
    a = h.submit("first prompt", max_tokens=8)
    if late:  # the others are mid-decode when the bad prompt's prefill joins their batch
        h.step()
        h.step()
    bad = h.submit("bad!", max_tokens=8)
    c = h.submit("third", max_tokens=8)
    h.run()
    assert isinstance(bad.error, EngineError) and bad.events == []
    assert_greedy(h, a, "first prompt", 8)
    assert_greedy(h, c, "third", 8)
    assert h.runner.kv[h.slot_of(a)] == encode("first prompt") + a.token_ids()[:-1]
    stats = h.scheduler.stats()
    assert (stats.running, stats.waiting) == (0, 0)


def test_a_request_whose_sampling_fails_fails_alone() -> None:
    h = SchedulerHarness(max_seqs=2)
    good = h.submit("steady", max_tokens=6)
    bad = h.submit("flaky", max_tokens=6, temperature=1.0)
    assert bad.active is not None

    def explode(*_: object) -> int:
        raise ValueError("a logits processor failed")

    h.step()
    bad.active.sequences[0].choice.sampler.choose = explode  # type: ignore[method-assign]
    h.run()
    assert isinstance(bad.error, EngineError) and "logits processor" in str(bad.error)
    assert_greedy(h, good, "steady", 6)


@pytest.mark.parametrize("token", [-5, 260, 999_999])
def test_a_prompt_token_outside_the_vocabulary_is_refused_at_submit(token: int) -> None:
    h = SchedulerHarness()
    with pytest.raises(InvalidRequestError) as refused:
        h.submit([104, 105, token], max_tokens=2)
    assert refused.value.param == "messages"
    assert "position 2" in refused.value.message
    assert h.scheduler.stats().waiting == 0
