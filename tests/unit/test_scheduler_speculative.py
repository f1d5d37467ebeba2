"""Speculative decoding in the scheduler (n-gram prompt lookup), over ``FakeRunner``.

The fake runner's logits depend only on each sequence's KV, and it fails on any KV hole or
overlap, so a draft whose KV is not removed after a rejection, or a position decoded twice,
shows up as a violation; outputs must equal plain decoding's token for token.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from pampero.engines.speculative import ngram_draft
from pampero.errors import EngineError
from pampero.inference import SpeculativeParams
from tests.fakes import FakeRunner, SchedulerHarness, Scripted, letters

NGRAM = SpeculativeParams("ngram", 4)
CODE = b"def add(a, b):\n    return a + b\n"


def echo_runner(**kwargs: int) -> FakeRunner:
    """A model that answers ``CODE`` by repeating it with one change, then stops."""
    prompt = b"Rewrite: " + CODE
    answer = CODE.replace(b"add", b"sum")
    return FakeRunner(next_token=Scripted({prompt: answer}), **kwargs)


def test_ngram_draft_proposes_what_followed_the_longest_recent_match() -> None:
    assert ngram_draft([5, 6, 7, 8, 1, 5, 6, 7], 3) == [8, 1, 5]
    assert ngram_draft([1, 2, 3, 4], 3) == []  # nothing recurs
    assert ngram_draft([1, 2, 9, 1, 2], 5) == [9, 1, 2]  # only what exists
    assert ngram_draft([1, 2, -2, 1, 2], 3) == []  # image cells are never proposed
    assert ngram_draft([1, 2, 3, 1, 2], 0) == []


def test_greedy_output_is_identical_and_drafts_are_accepted() -> None:
    prompt = "Rewrite: " + CODE.decode()
    plain = SchedulerHarness(echo_runner())
    base = plain.submit(prompt, max_tokens=40)
    plain_steps = plain.run()
    fast = SchedulerHarness(echo_runner())
    spec = fast.submit(prompt, max_tokens=40, speculative=NGRAM)
    spec_steps = fast.run()
    assert spec.error is None and base.error is None
    assert spec.token_ids() == base.token_ids()
    assert spec.text() == base.text() == CODE.replace(b"add", b"sum").decode()
    assert spec.finish() == base.finish() == ("stop", None)
    last = spec.events[-1]
    assert last.accepted_draft_tokens > 0
    assert last.accepted_draft_tokens <= last.draft_tokens
    assert spec_steps < plain_steps
    assert base.events[-1].draft_tokens == 0


def test_rejected_drafts_leave_no_kv_behind() -> None:
    # letters() follows no pattern, so most drafts are rejected: every rejection must be
    # trimmed, or the fake runner's contiguity check fails the next decode.
    prompt = "abcabcabcabcabc"
    plain = SchedulerHarness(FakeRunner(next_token=letters))
    base = plain.submit(prompt, max_tokens=30)
    plain.run()
    runner = FakeRunner(next_token=letters)
    fast = SchedulerHarness(runner)
    spec = fast.submit(prompt, max_tokens=30, speculative=NGRAM)
    fast.run()
    assert spec.token_ids() == base.token_ids()
    assert spec.events[-1].draft_tokens > spec.events[-1].accepted_draft_tokens
    slot = fast.slot_of(spec)
    assert runner.kv[slot] == [*spec.active.prompt, *spec.token_ids()[:-1]]  # type: ignore[union-attr]


def test_max_tokens_and_stop_strings_hold_inside_a_window() -> None:
    prompt = "Rewrite: " + CODE.decode()
    for kwargs in ({"max_tokens": 7}, {"max_tokens": 40, "stop": ["return"]}):
        plain = SchedulerHarness(echo_runner())
        base = plain.submit(prompt, **kwargs)
        plain.run()
        fast = SchedulerHarness(echo_runner())
        spec = fast.submit(prompt, speculative=NGRAM, **kwargs)
        fast.run()
        assert spec.token_ids() == base.token_ids()
        assert spec.text() == base.text()
        assert spec.finish() == base.finish()


def test_speculating_and_plain_requests_share_batches() -> None:
    prompt = "Rewrite: " + CODE.decode()
    runner = echo_runner()
    h = SchedulerHarness(runner)
    spec = h.submit(prompt, max_tokens=40, speculative=NGRAM)
    plain = h.submit("hello there", max_tokens=12)
    greedy_off = h.submit(prompt, max_tokens=40, speculative=SpeculativeParams("none", 4))
    h.run()
    assert spec.token_ids() == runner.expected(h.tokenizer.encode(prompt), len(spec.token_ids()))
    assert plain.token_ids() == runner.expected(h.tokenizer.encode("hello there"), 12)
    assert greedy_off.token_ids() == spec.token_ids()
    assert greedy_off.events[-1].draft_tokens == 0
    mixed = [b for b in runner.batches if len({r.seq_id for r in b}) > 1]
    assert any(len(b) > len({r.seq_id for r in b}) for b in mixed)  # drafts beside others


def test_a_server_default_applies_unless_a_request_turns_it_off() -> None:
    prompt = "Rewrite: " + CODE.decode()
    h = SchedulerHarness(echo_runner())
    h.scheduler.config.speculative = NGRAM
    on = h.submit(prompt, max_tokens=30)
    off = h.submit(prompt, max_tokens=30, speculative=SpeculativeParams("none", 4))
    h.run()
    assert on.events[-1].accepted_draft_tokens > 0
    assert off.events[-1].draft_tokens == 0
    assert on.token_ids() == off.token_ids()


def test_a_failed_batch_is_rewound_with_its_drafts_and_retried() -> None:
    prompt = "Rewrite: " + CODE.decode()
    runner = echo_runner()
    h = SchedulerHarness(runner)
    spec = h.submit(prompt, max_tokens=40, speculative=NGRAM)
    other = h.submit("abc", max_tokens=20)
    for _ in range(4):
        h.step()
    runner.fail_next_decode = RuntimeError("one bad step")
    h.run()
    assert spec.error is None and other.error is None
    assert spec.token_ids() == runner.expected(h.tokenizer.encode(prompt), len(spec.token_ids()))
    assert other.token_ids() == runner.expected(h.tokenizer.encode("abc"), 20)


def test_a_request_failing_alone_keeps_its_neighbours_speculating() -> None:
    prompt = "Rewrite: " + CODE.decode()
    runner = echo_runner()
    runner.poison = frozenset({ord("Z")})
    h = SchedulerHarness(runner)
    spec = h.submit(prompt, max_tokens=40, speculative=NGRAM)
    bad = h.submit("xyZ", max_tokens=5)
    h.run()
    assert isinstance(bad.error, EngineError)
    assert spec.error is None
    assert spec.events[-1].accepted_draft_tokens > 0


def _first_tokens(speculative: SpeculativeParams | None, runs: int) -> collections.Counter[str]:
    # A model whose every next-token distribution is a softmax over ``ramp``: token t, t+1,
    # t+2, ... with logits 0, -0.5, -1, ...; at temperature 1 the draft (what followed the
    # same two tokens before) is accepted only part of the time.
    def repeat(context: Sequence[int]) -> int:
        return context[len(context) - 3] if len(context) >= 3 else ord("a")

    h = SchedulerHarness(FakeRunner(next_token=repeat), max_seqs=8, max_queue=runs)
    sinks = [
        h.submit("xyzxyzxyz", max_tokens=3, temperature=1.0, top_k=3, speculative=speculative)
        for _ in range(runs)
    ]
    h.run(max_steps=10 * runs)
    return collections.Counter(bytes(s.token_ids()).decode() for s in sinks)


def test_sampled_output_keeps_its_distribution() -> None:
    runs = 1200
    plain = _first_tokens(None, runs)
    spec = _first_tokens(NGRAM, runs)
    keys = sorted(k for k in set(plain) | set(spec) if plain[k] + spec[k] >= 10)
    a = np.array([plain[k] for k in keys], dtype=np.float64)
    b = np.array([spec[k] for k in keys], dtype=np.float64)
    # Chi-square test of homogeneity of two samples over the frequent outcomes.
    total = a + b
    expected_a = total * a.sum() / total.sum()
    expected_b = total * b.sum() / total.sum()
    chi2 = float(((a - expected_a) ** 2 / expected_a + (b - expected_b) ** 2 / expected_b).sum())
    dof = len(keys) - 1
    # The 99.9th percentile of chi-square(dof), by the Wilson-Hilferty approximation.
    z = 3.09
    limit = dof * (1 - 2 / (9 * dof) + z * (2 / (9 * dof)) ** 0.5) ** 3
    assert dof >= 5
    assert chi2 < limit, (chi2, limit, plain.most_common(8), spec.most_common(8))


@pytest.mark.parametrize("k", [1, 3])
def test_drafts_never_exceed_the_batch(k: int) -> None:
    runner = echo_runner(n_batch=8, max_seqs=4)
    h = SchedulerHarness(runner, max_seqs=4, prefill_chunk=4)
    prompt = "Rewrite: " + CODE.decode()
    sinks = [
        h.submit(prompt, max_tokens=30, speculative=SpeculativeParams("ngram", k)) for _ in range(3)
    ]
    h.run()
    assert all(len(b) <= 8 for b in runner.batches)
    for sink in sinks:
        assert (
            sink.token_ids()
            == runner.expected(h.tokenizer.encode(prompt), 30)[: len(sink.token_ids())]
        )


def _windows(runner: FakeRunner, seq_id: int) -> list[tuple[int, int]]:
    """(first position, rows) of each decode step's window for ``seq_id``."""
    steps = []
    for rows in runner.rows_of(seq_id):
        sampled = [r for r in rows if r.wants_logits]
        if sampled and len(sampled) == len(rows):
            steps.append((sampled[0].position, len(sampled)))
    return steps


def test_draft_windows_grow_while_accepted_and_pause_after_a_rejection() -> None:
    copying = echo_runner()
    h = SchedulerHarness(copying)
    sink = h.submit("Rewrite: " + CODE.decode(), max_tokens=40, speculative=SpeculativeParams())
    h.run()
    grown = _windows(copying, h.slot_of(sink))
    drafted = [rows for _, rows in grown if rows > 1]
    assert drafted[0] <= 5 < max(drafted)  # 4 drafts first, more once they are accepted

    # "ab" is followed by another letter every time: each draft after it is wrong at once.
    answer = "".join(f"ab{c}" for c in "cdefghijklmnopqrstuvwxyz").encode()
    rambling = FakeRunner(next_token=Scripted({b"Spell: ": answer}))
    h = SchedulerHarness(rambling)
    sink = h.submit("Spell: ", max_tokens=70, speculative=SpeculativeParams())
    h.run()
    assert sink.text() == answer[:70].decode()
    windows = _windows(rambling, h.slot_of(sink))
    for (position, rows), (after, next_rows) in itertools.pairwise(windows):
        if rows > 1 and after - position - 1 == 0:
            assert next_rows == 1  # drafting pauses after a window with nothing accepted
    assert sink.events[-1].accepted_draft_tokens == 0
    assert sink.events[-1].draft_tokens < 20  # 272 when every step drafted its 16


DRAFT = SpeculativeParams("draft", 4)


def test_a_draft_model_that_agrees_has_every_draft_accepted() -> None:
    prompt = "Rewrite: " + CODE.decode()
    plain = SchedulerHarness(echo_runner())
    base = plain.submit(prompt, max_tokens=40)
    plain_steps = plain.run()
    draft = echo_runner()  # the same "model": every greedy draft is the target's token
    fast = SchedulerHarness(echo_runner(), draft=draft)
    spec = fast.submit(prompt, max_tokens=40, speculative=DRAFT)
    spec_steps = fast.run()
    assert spec.token_ids() == base.token_ids()
    assert spec.finish() == base.finish()
    last = spec.events[-1]
    # Every draft holds but those of the last window past the end of the answer.
    assert last.draft_tokens > 0
    assert last.draft_tokens - DRAFT.num_tokens <= last.accepted_draft_tokens < last.draft_tokens
    assert spec_steps < plain_steps / 2
    # The draft model's KV holds a prefix of the sequence (plus unverified drafts at most).
    slot_tokens = [*spec.active.prompt, *spec.token_ids()]  # type: ignore[union-attr]
    held = draft.kv[0]
    shared = min(len(held), len(slot_tokens) - 1)
    assert shared > len(spec.active.prompt) and held[:shared] == slot_tokens[:shared]  # type: ignore[union-attr]


def test_a_draft_model_that_disagrees_changes_nothing_but_speed() -> None:
    prompt = "Rewrite: " + CODE.decode()
    plain = SchedulerHarness(echo_runner())
    base = plain.submit(prompt, max_tokens=40)
    plain.run()
    draft = FakeRunner(next_token=letters)  # a different model: its drafts are rejected
    fast = SchedulerHarness(echo_runner(), draft=draft)
    spec = fast.submit(prompt, max_tokens=40, speculative=DRAFT)
    fast.run()
    assert spec.token_ids() == base.token_ids()
    last = spec.events[-1]
    assert last.draft_tokens > last.accepted_draft_tokens
    assert not draft.violations


def test_draft_model_sequences_share_steps_and_slots_are_reused() -> None:
    """Four requests at once, then four more in the same slots, sampled and greedy: outputs
    equal plain decoding's, and neither runner's KV ever has a hole or an overlap."""
    prompts = ["abcabcabcabc", "Rewrite: " + CODE.decode(), "xyz", "hello hello hello"]
    plain = SchedulerHarness(echo_runner(), max_seqs=4)
    expected = [plain.submit(p, max_tokens=24, seed=7, temperature=0.8) for p in prompts]
    plain.run()
    draft = echo_runner()
    fast = SchedulerHarness(echo_runner(), max_seqs=4, draft=draft)
    for round_ in range(2):
        got = [
            fast.submit(p, max_tokens=24, seed=7, temperature=0.8, speculative=DRAFT)
            for p in prompts
        ]
        fast.run()
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.token_ids() == theirs.token_ids(), round_
        assert sum(c.events[-1].draft_tokens for c in got) > 0
    assert not draft.violations


def test_the_drafter_proposes_the_draft_models_greedy_tokens() -> None:
    from pampero.engines.drafter import ModelDrafter

    draft = FakeRunner(next_token=letters, n_batch=8, n_ctx_seq=40)
    drafter = ModelDrafter(draft)
    a, b = list(b"a long prompt of twenty"), list(b"short")

    def greedy(tokens: list[int], k: int) -> list[int]:
        out: list[int] = []
        for _ in range(k):
            out.append(letters([*tokens, *out]))
        return out

    assert drafter.propose([(0, a, 3), (1, b, 2)]) == [greedy(a, 3), greedy(b, 2)]
    # The sequence moved on by one accepted draft and a correction; another slot's request
    # changed entirely: each draft KV is cut back to what is still shared, then extended.
    a2 = [*a, greedy(a, 1)[0], ord("!")]
    assert drafter.propose([(0, a2, 4), (1, list(b"other"), 1)]) == [
        greedy(a2, 4),
        greedy(list(b"other"), 1),
    ]
    assert draft.kv[0] == [*a2, *greedy(a2, 3)]
    # Near the end of the draft model's context (40) it proposes fewer: 38 tokens, two
    # drafts decoded at positions 38 and 39, three drafts.
    assert len(drafter.propose([(2, list(range(97, 97 + 38)), 5)])[0]) == 3
    assert not draft.violations
