"""``ChoiceOutput`` ends choices exactly as the batching scheduler ends its sequences.

Each case runs once through the scheduler (over the fake runner) and once through a bare
``ChoiceOutput`` fed the same logits, and the two must agree on tokens, text, log-probabilities
and how the choice ended.
"""

from __future__ import annotations

from typing import Any

import pytest

from pampero.engines.choice import ChoiceOutput, ChoiceVocabulary
from pampero.inference import SamplingParams, SequenceDelta
from tests.fakes import ByteTokenizer, FakeRunner, SchedulerHarness, Scripted

PROMPT = b"go"
SCRIPT = b"abcdcdef"

CASES: list[dict[str, Any]] = [
    {"max_tokens": 20},
    {"max_tokens": 3},
    {"stop": ["cd"]},
    {"stop": ["cd"], "include_stop_str_in_output": True},
    {"stop": ["zz", "dc"]},
    {"stop": ["cd"], "min_tokens": 5},  # the first "cd" comes too early to count
    {"stop_token_ids": [ord("d")]},
    {"stop_token_ids": [ord("d")], "include_stop_str_in_output": True},
    {"min_tokens": 10, "max_tokens": 12},
    {"ignore_eos": True, "max_tokens": 11},
    {"logprobs": 2, "max_tokens": 5},
    {"temperature": 1.0, "seed": 7, "max_tokens": 6, "logprobs": 1},
    {"max_tokens": 40, "n_ctx": 7},  # the context ends first
]


def scheduler_outcome(params: dict[str, Any], n_ctx: int) -> tuple[Any, ...]:
    runner = FakeRunner(n_ctx_seq=n_ctx, next_token=Scripted({PROMPT: SCRIPT}))
    harness = SchedulerHarness(runner)
    sink = harness.submit(list(PROMPT), **params)
    harness.run()
    return summary(sink.deltas())


def choice_outcome(params: dict[str, Any], n_ctx: int) -> tuple[Any, ...]:
    runner = FakeRunner(n_ctx_seq=n_ctx, next_token=Scripted({PROMPT: SCRIPT}))
    tokenizer = ByteTokenizer()
    vocab = ChoiceVocabulary(
        pieces=[tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size)],
        special_ids=frozenset(range(256, tokenizer.vocab_size)),
        eog_ids=tokenizer.eog_token_ids,
    )
    sampling = SamplingParams(**{"temperature": 0.0, **params})
    choice = ChoiceOutput.start(
        sampling, list(PROMPT), vocab, vocab_size=runner.n_vocab, n_ctx=n_ctx
    )
    context, deltas = list(PROMPT), []
    while not choice.done:
        row = runner.logits_for(context)
        token = choice.sampler.choose(row, choice.output_ids)
        choice.append(token, row)
        context.append(token)
        if (delta := choice.delta()) is not None:
            deltas.append(delta)
    assert choice.delta() is None  # nothing after the finishing delta
    return summary(deltas)


def summary(deltas: list[SequenceDelta]) -> tuple[Any, ...]:
    last = deltas[-1]
    logprobs = [(e.token_id, round(e.logprob, 5), e.top) for d in deltas for e in d.logprobs or []]
    return (
        [t for d in deltas for t in d.token_ids],
        "".join(d.text for d in deltas),
        last.finish_reason,
        last.stop_reason,
        logprobs,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_choice_output_matches_the_scheduler(case: dict[str, Any]) -> None:
    params = dict(case)
    n_ctx = params.pop("n_ctx", 128)
    assert choice_outcome(params, n_ctx) == scheduler_outcome(params, n_ctx)


def test_a_choice_with_nothing_allowed_stops_without_a_token() -> None:
    vocab = ChoiceVocabulary(pieces=[b"a", b"b"], special_ids=frozenset(), eog_ids=frozenset())
    choice = ChoiceOutput.start(SamplingParams(), [0], vocab, vocab_size=2, n_ctx=8)
    choice.append(-1, FakeRunner(n_vocab=2).logits_for([0]))
    delta = choice.delta()
    assert delta is not None
    assert (delta.token_ids, delta.finish_reason, delta.stop_reason) == ([], "stop", None)
