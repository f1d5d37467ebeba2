"""How the scheduler ends sequences, what their deltas carry, and prompt/token logprobs."""

from __future__ import annotations

import pytest

from pampero.sampling.sampler import logprobs_of
from tests.fakes import FakeRunner, SchedulerHarness, Scripted

EOS, IM_START = 256, 257  # ByteTokenizer ids of <|endoftext|> (end of generation), <|im_start|>


def scripted(script: bytes, *, prompt: bytes = b"go", n_ctx_seq: int = 128) -> SchedulerHarness:
    """A harness whose model answers ``prompt`` with ``script`` and then the end token."""
    return SchedulerHarness(FakeRunner(n_ctx_seq=n_ctx_seq, next_token=Scripted({prompt: script})))


def test_the_end_token_stops_and_is_reported_but_not_shown() -> None:
    h = scripted(b"ok")
    sink = h.submit("go", max_tokens=10)
    h.run()
    assert sink.token_ids() == [*b"ok", EOS]
    assert sink.text() == "ok"
    assert sink.finish() == ("stop", None)


def test_ignore_eos_never_chooses_the_end_token() -> None:
    h = scripted(b"ok")
    sink = h.submit("go", max_tokens=5, ignore_eos=True)
    h.run()
    ids = sink.token_ids()
    assert len(ids) == 5 and EOS not in ids
    assert ids[2] == IM_START  # the model's second choice once the end token is masked
    assert sink.finish() == ("length", None)


def test_min_tokens_holds_back_the_end_token_until_reached() -> None:
    h = scripted(b"x")
    sink = h.submit("go", max_tokens=10, min_tokens=3)
    h.run()
    ids = sink.token_ids()
    assert EOS not in ids[:3]
    assert ids == [ord("x"), IM_START, IM_START, EOS]
    assert sink.finish() == ("stop", None)


@pytest.mark.parametrize(("include", "text"), [(False, "abc"), (True, "abcd")])
def test_a_stop_token_id_stops_with_its_id_as_reason(include: bool, text: str) -> None:
    h = scripted(b"abcdef")
    sink = h.submit(
        "go", max_tokens=10, stop_token_ids=[ord("d")], include_stop_str_in_output=include
    )
    h.run()
    assert sink.token_ids() == list(b"abcd")
    assert sink.text() == text
    assert sink.finish() == ("stop", ord("d"))


def test_min_tokens_holds_back_stop_token_ids_too() -> None:
    h = scripted(b"dd")
    sink = h.submit("go", max_tokens=10, min_tokens=2, stop_token_ids=[ord("d")])
    h.run()
    assert sink.token_ids()[0] != ord("d")
    assert sink.finish()[0] == "stop"


@pytest.mark.parametrize(
    ("stop", "include", "text", "reason"),
    [
        (["o w"], False, "hell", "o w"),
        (["o w"], True, "hello w", "o w"),
        (["world", "lo"], False, "hel", "lo"),  # the first stop string completed wins
        (["zzz"], False, "hello world", None),  # then the end token
    ],
)
def test_stop_strings_cut_the_text(
    stop: list[str], include: bool, text: str, reason: str | None
) -> None:
    h = scripted(b"hello world")
    sink = h.submit("go", max_tokens=20, stop=stop, include_stop_str_in_output=include)
    h.run()
    assert sink.text() == text
    assert sink.finish() == ("stop", reason)


def test_streamed_text_never_shows_the_beginning_of_a_stop_string() -> None:
    h = scripted(b"one two, three")
    sink = h.submit("go", max_tokens=30, stop=[", three"])
    h.run()
    deltas = [d.text for d in sink.deltas()]
    assert "".join(deltas) == "one two"
    assert not any("," in d for d in deltas)
    assert sink.finish() == ("stop", ", three")


def test_a_stop_string_is_only_looked_for_once_min_tokens_are_out() -> None:
    h = scripted(b"abab")
    sink = h.submit("go", max_tokens=10, min_tokens=2, stop=["a"])
    h.run()
    assert sink.text() == "ab"
    assert sink.finish() == ("stop", "a")


def test_max_tokens_ends_with_length() -> None:
    h = scripted(b"a long answer that goes on")
    sink = h.submit("go", max_tokens=4)
    h.run()
    assert sink.text() == "a lo"
    assert sink.finish() == ("length", None)


def test_the_end_of_the_context_ends_with_length() -> None:
    h = scripted(b"a long answer that goes on", n_ctx_seq=12)
    sink = h.submit("go", max_tokens=None)
    h.run()
    assert sink.text() == "a long ans"
    assert len(sink.token_ids()) == 10  # prompt + output fill the context exactly
    assert sink.finish() == ("length", None)
    assert max(r.position for b in h.runner.batches for r in b) == 10


def test_deltas_carry_each_tokens_logprobs_when_asked() -> None:
    h = SchedulerHarness()
    prompt = list(b"logprobs")
    sink = h.submit(prompt, max_tokens=4, logprobs=2)
    h.run()
    context = list(prompt)
    entries = [lp for d in sink.deltas() for lp in d.logprobs or []]
    assert [e.token_id for e in entries] == sink.token_ids()
    for entry in entries:
        assert entry == logprobs_of(h.runner.logits_for(context), entry.token_id, 2)
        context.append(entry.token_id)
    assert all(e.rank == 1 and len(e.top) == 2 for e in entries)  # greedy picks the best


def test_deltas_carry_no_logprobs_unless_asked() -> None:
    h = SchedulerHarness()
    sink = h.submit("hi", max_tokens=2)
    h.run()
    assert all(d.logprobs is None for d in sink.deltas())


def test_prompt_logprobs_cover_every_prompt_token_across_chunks() -> None:
    runner = FakeRunner(n_batch=256, n_ctx_seq=256)
    h = SchedulerHarness(runner, prefill_chunk=256)
    prompt = [97 + (i * 7) % 26 for i in range(150)]
    sink = h.submit(prompt, max_tokens=2, prompt_logprobs=2)
    h.run()
    rows = runner.rows_of(h.slot_of(sink))
    assert [len(r) for r in rows if len(r) > 1] == [64, 64, 22]  # held to 64 rows per step
    got = sink.events[0].prompt_logprobs
    assert got is not None and len(got) == len(prompt) and got[0] is None
    for i in range(1, len(prompt)):
        assert got[i] == logprobs_of(runner.logits_for(prompt[:i]), prompt[i], 2), i
    assert all(e.prompt_logprobs is None for e in sink.events[1:])
    assert sink.token_ids() == runner.expected(prompt, 2)


def test_prompt_logprobs_bypass_the_prefix_cache() -> None:
    h = SchedulerHarness(max_seqs=1)
    h.submit("cached prompt", max_tokens=1)
    h.run()
    sink = h.submit("cached prompt", max_tokens=1, prompt_logprobs=0)
    h.run()
    assert sink.events[0].cached_tokens == 0
    got = sink.events[0].prompt_logprobs
    assert got is not None and all(e is not None and e.top == [] for e in got[1:])


def test_every_choice_of_a_request_ends_in_the_same_event_stream() -> None:
    h = scripted(b"abc")
    sink = h.submit("go", n=2, max_tokens=10, stop=["b"])
    h.run()
    assert [sink.text(i) for i in range(2)] == ["a", "a"]
    assert [sink.finish(i) for i in range(2)] == [("stop", "b")] * 2
    assert all(e.prompt_tokens == 2 and e.cached_tokens == 0 for e in sink.events)
