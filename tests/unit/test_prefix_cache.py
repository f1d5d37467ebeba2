"""The prefix cache beyond the slots (``pampero.engines.prefix_cache``), over ``FakeRunner``.

More conversations than slots: each one's history must survive the others taking its slot,
be found by longest common prefix whatever slot the next turn lands in, stay within its token
budget (least recently used out first), and give the same output as a cold prompt.
"""

from __future__ import annotations

from typing import Any

import pytest

from pampero.engines.prefix_cache import HostStore, KvStore, PrefixCache, common_prefix
from tests.fakes import Collector, FakeRunner, SchedulerHarness

# Where the histories live: extra sequence ids of a unified KV buffer, or host memory (the default).
STORES: dict[str, dict[str, Any]] = {
    "kv": {"cache_seqs": 8},
    "host": {"cache_in_host": True},
}


def conversation(i: int) -> str:
    return f"System: you are assistant number {i}, be brief and exact.\nUser: question {i}?\n"


def two_turns(h: SchedulerHarness, count: int) -> list[tuple[list[int], Collector]]:
    firsts = []
    for i in range(count):
        sink = h.submit(conversation(i), max_tokens=6)
        h.run()
        firsts.append(sink)
    seconds = []
    for i, first in enumerate(firsts):
        follow = [*h.tokenizer.encode(conversation(i)), *first.token_ids(), *b"\nUser: and?\n"]
        sink = h.submit(follow, max_tokens=4)
        h.run()
        seconds.append((follow, sink))
    return seconds


@pytest.mark.parametrize("store", STORES)
def test_histories_outlive_their_slots_and_match_from_any_of_them(store: str) -> None:
    h = SchedulerHarness(max_seqs=2, cache_tokens=2000, **STORES[store])
    for i, (follow, sink) in enumerate(two_turns(h, 6)):
        assert sink.error is None
        history = len(conversation(i)) + 6 - 1  # the last answer token was never decoded
        assert sink.events[0].cached_tokens >= history, i
        assert sink.token_ids() == h.runner.expected(follow, 4)
    assert (h.runner.saved > 0) == (store == "host")


def test_without_the_cache_displaced_histories_are_recomputed() -> None:
    h = SchedulerHarness(max_seqs=2)
    cached = [sink.events[0].cached_tokens for _, sink in two_turns(h, 6)]
    assert min(cached) < len(conversation(0)) // 2  # the shared "System: you are ..." only


@pytest.mark.parametrize("store", STORES)
def test_cache_hits_give_the_same_output_as_a_cold_prompt(store: str) -> None:
    warm = SchedulerHarness(max_seqs=1, cache_tokens=1000, **STORES[store])
    cold = SchedulerHarness(max_seqs=1, prefix_cache=False)
    for h in (warm, cold):
        outputs = two_turns(h, 3)
        h.outputs = [s.token_ids() for _, s in outputs]  # type: ignore[attr-defined]
    assert warm.outputs == cold.outputs  # type: ignore[attr-defined]


def test_the_budget_evicts_least_recently_used_first() -> None:
    runner = FakeRunner(max_seqs=6)
    cache = PrefixCache(KvStore(runner, range(2, 6)), budget=100, min_tokens=4)
    histories = {seq: [seq] * 40 for seq in (0, 1)}
    for seq, tokens in histories.items():
        runner.kv[seq] = list(tokens)
    cache.keep(0, histories[0])
    cache.keep(1, histories[1])
    assert cache.used == 80 and len(cache) == 2
    assert cache.match([0] * 50, limit=49)[1] == 40  # 0 is now the most recently used
    runner.kv[1] = [7] * 30
    cache.keep(1, [7] * 30)  # over budget: the entry of 1 (least recent) goes
    assert cache.used == 70
    assert cache.match([1] * 50, limit=49) == (-1, 0)
    assert cache.match([7] * 30, limit=29)[1] == 29
    assert cache.used <= cache.budget


def test_an_entry_is_replaced_by_its_own_continuation_and_short_ones_are_skipped() -> None:
    runner = FakeRunner(max_seqs=4)
    cache = PrefixCache(KvStore(runner, range(1, 4)), budget=1000, min_tokens=8)
    runner.kv[0] = list(range(20))
    cache.keep(0, list(range(10)))
    cache.keep(0, list(range(20)))
    assert len(cache) == 1 and cache.used == 20
    cache.keep(0, list(range(5)))  # shorter than min_tokens, and held already anyway
    assert len(cache) == 1
    assert common_prefix([1, 2, -2, 4], [1, 2, -2, 4], 4) == 2  # image cells never match


def test_host_entries_restore_into_any_sequence_and_free_their_memory() -> None:
    runner = FakeRunner(max_seqs=2)
    store = HostStore(runner, capacity=2)
    cache = PrefixCache(store, budget=100, min_tokens=4)
    runner.kv[0] = list(range(30))
    cache.keep(0, list(range(30)))
    runner.kv[0] = [5] * 20  # the slot moves on; the entry is a copy
    key, length = cache.match([*range(25), 99], limit=25)
    assert length == 25
    cache.restore(key, 1, length)
    assert runner.kv[1] == list(range(25))  # trimmed to the matched prefix
    for i in (1, 2):  # two more entries: capacity 2, so the oldest goes
        runner.kv[0] = [100 + i] * 10
        cache.keep(0, [100 + i] * 10)
    assert len(cache) == 2 and store.full()
    assert cache.match(list(range(30)), limit=29) == (-1, 0)
    assert cache.used == 20
