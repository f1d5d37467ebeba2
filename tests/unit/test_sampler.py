"""``Sampler`` and ``logprobs_of``: vLLM's sampling semantics on one logits row."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pampero.errors import InvalidRequestError
from pampero.inference import SamplingParams
from pampero.sampling import processors, sampler
from pampero.sampling.sampler import Sampler, logprobs_of
from tests.fakes import ByteTokenizer

Row = npt.NDArray[np.float32]
END = 7  # the end-of-generation token of the small vocabularies below


def make(prompt: Sequence[int] = (), *, vocab: int = 10, index: int = 0, **params: Any) -> Sampler:
    return Sampler(
        SamplingParams(**params),
        prompt,
        vocab_size=vocab,
        end_ids=frozenset({END}),
        choice_index=index,
    )


def row(*values: float) -> Row:
    return np.asarray(values, dtype=np.float32)


class Spy:
    """A logits processor that records the rows it is shown (it runs after every other edit)."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def __call__(self, output_ids: Sequence[int], logits: Row) -> None:
        self.rows.append(logits.copy())


def processed(logits: Row, output_ids: Sequence[int] = (), **params: Any) -> Row:
    spy = Spy()
    make(logits_processors=[spy], temperature=0.0, **params).choose(logits, output_ids)
    return spy.rows[0]


def draws(s: Sampler, logits: Row, n: int) -> Counter[int]:
    return Counter(s.choose(logits, []) for _ in range(n))


def softmax(x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    e = np.exp(np.asarray(x, dtype=np.float64) - np.max(x))
    return e / e.sum()  # type: ignore[no-any-return]


def chi_square(counts: Counter[int], probs: npt.NDArray[np.float64], n: int) -> float:
    observed = np.array([counts.get(i, 0) for i in range(len(probs))], dtype=np.float64)
    expected = probs * n
    return float(np.sum((observed - expected) ** 2 / expected))


# -- choosing ----------------------------------------------------------------------------------


def test_greedy_picks_the_argmax_and_leaves_the_row_alone() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=50).astype(np.float32)
    before = logits.copy()
    s = make(vocab=50, temperature=0.0)
    assert s.choose(logits, []) == int(np.argmax(logits))
    assert s.plain_greedy
    np.testing.assert_array_equal(logits, before)


def test_top_k_1_is_greedy() -> None:
    s = make(temperature=1.0, top_k=1)
    assert s.plain_greedy
    assert s.choose(row(0, 3, 1, 2), []) == 1


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.5])
def test_temperature_sampling_follows_the_softmax(temperature: float) -> None:
    logits = row(2.0, 1.0, 0.5, 0.0, -1.0)
    n = 20_000
    counts = draws(make(vocab=5, temperature=temperature, seed=1234), logits, n)
    # df=4: 18.47 is the 0.1% critical value; a wrong temperature gives hundreds.
    assert chi_square(counts, softmax(logits / temperature), n) < 18.47


def test_a_seed_makes_sampling_reproducible_per_choice() -> None:
    logits = row(1.0, 0.9, 0.8, 0.7, 0.6)

    def sequence(**kw: Any) -> list[int]:
        s = make(vocab=5, temperature=1.0, **kw)
        return [s.choose(logits, []) for _ in range(200)]

    assert sequence(seed=42) == sequence(seed=42)
    assert sequence(seed=42, index=1) == sequence(seed=42, index=1)
    assert sequence(seed=42) != sequence(seed=42, index=1)  # n>1 choices differ
    assert sequence(seed=42) != sequence(seed=43)
    assert sequence() != sequence()


def test_top_k_keeps_the_k_best_with_renormalised_odds() -> None:
    logits = row(0.5, 2.0, -1.0, 1.5, 0.0, 1.0, -2.0, 0.2)
    n = 6_000
    counts = draws(make(vocab=8, temperature=1.0, top_k=3, seed=5), logits, n)
    assert set(counts) == {1, 3, 5}
    kept = softmax(np.array([2.0, 1.5, 1.0]))
    observed = Counter({0: counts[1], 1: counts[3], 2: counts[5]})
    assert chi_square(observed, kept, n) < 13.82  # df=2, 0.1%


@pytest.mark.parametrize(("temperature", "support"), [(1.0, {0, 1, 2}), (2.0, {0, 1, 2, 3})])
def test_min_p_keeps_tokens_within_a_fraction_of_the_best_after_temperature(
    temperature: float, support: set[int]
) -> None:
    # probability / best: exp((l - 3) / T) -> T=1: 1, .61, .37, .14, .05 ; T=2: 1, .78, .61, .37
    logits = row(3.0, 2.5, 2.0, 1.0, 0.0, -1.0)
    s = make(vocab=6, temperature=temperature, min_p=0.3, seed=9)
    assert set(draws(s, logits, 3_000)) == support


def vllm_top_p(probs: npt.NDArray[np.float64], top_p: float) -> set[int]:
    """vLLM's definition: keep a token when the mass of the tokens ranked above it is < top_p."""
    order = np.argsort(-probs, kind="stable")
    before = np.concatenate([[0.0], np.cumsum(probs[order])[:-1]])
    return {int(t) for t in order[before < top_p]}


@pytest.mark.parametrize("top_p", [0.45, 0.55, 0.75, 0.9])
def test_top_p_keeps_the_smallest_set_reaching_the_mass(top_p: float) -> None:
    probs = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    s = make(vocab=5, temperature=1.0, top_p=top_p, seed=3)
    assert set(draws(s, np.log(probs).astype(np.float32), 3_000)) == vllm_top_p(probs, top_p)


def big_vocabulary() -> tuple[Row, int, int]:
    """5000 tokens: A holds 0.80, B 0.08, 1022 middling tokens 0.05, the other 3976 tokens 0.07.

    A and B are the only tokens above a thousandth of A's weight, so top_p <= 0.88 sorts those
    two alone (the sampler's first floor) and a larger top_p goes on to the lower floors."""
    rng = np.random.default_rng(11)
    a, b = 17, 4001
    rest = [i for i in range(5000) if i not in (a, b)]
    probs = np.empty(5000)
    probs[a], probs[b] = 0.80, 0.08
    middling, tail = rest[:1022], rest[1022:]
    probs[middling] = 0.05 / 1022 * rng.uniform(0.9, 1.1, 1022)
    probs[tail] = 0.07 / 3976 * rng.uniform(0.9, 1.1, 3976)
    return np.log(probs / probs.sum()).astype(np.float32), a, b


@pytest.mark.parametrize(
    ("top_p", "support"),
    [(0.5, "A"), (0.85, "AB")],
)
def test_top_p_over_a_large_vocabulary_keeps_vllms_set(top_p: float, support: str) -> None:
    logits, a, b = big_vocabulary()
    expected = {"A": {a}, "AB": {a, b}}[support]
    assert vllm_top_p(softmax(logits), top_p) == expected
    s = make(vocab=5000, temperature=1.0, top_p=top_p, seed=21)
    assert set(draws(s, logits, 300)) == expected


@pytest.mark.parametrize(
    "top_p",
    [0.3, 0.5, 0.85, 0.9, 0.97],
)
def test_top_p_fast_path_and_full_sort_agree(top_p: float, monkeypatch: pytest.MonkeyPatch) -> None:
    logits, _, _ = big_vocabulary()

    def run() -> list[int]:
        s = make(vocab=5000, temperature=1.0, top_p=top_p, seed=8)
        return [s.choose(logits, []) for _ in range(400)]

    floored = run()
    monkeypatch.setattr(sampler, "_TOP_P_FLOORS", (0.0,))  # always sort the whole vocabulary
    assert run() == floored


@pytest.mark.parametrize("k", [1, 5, 40, 1000, 4999, 5000, 6000])
@pytest.mark.parametrize("shape", ["peaked", "flat", "ties", "masked"])
def test_top_ids_is_the_set_of_the_k_largest(k: int, shape: str) -> None:
    rng = np.random.default_rng(k)
    logits = rng.standard_normal(5000).astype(np.float32) * 3
    if shape == "peaked":
        logits[rng.integers(0, 5000, 3)] += 40.0  # a few far above the rest
    elif shape == "flat":
        logits = (0.5 + rng.uniform(0, 1e-3, 5000)).astype(np.float32)
    elif shape == "ties":
        logits = np.round(logits)  # many equal values at the k-th place
    else:
        logits[rng.random(5000) < 0.9] = -np.inf
    ids = sampler.top_ids(logits, k)
    assert list(ids) == sorted(set(ids.tolist()))
    assert len(ids) == min(k, 5000)
    kth = np.sort(logits)[::-1][min(k, 5000) - 1]
    assert np.all(logits[ids] >= kth)  # every chosen id is among the k largest values
    assert np.count_nonzero(logits > kth) <= len(ids)  # and every strictly larger one is chosen
    assert set(np.flatnonzero(logits > kth)) <= set(ids.tolist())


# -- processing ---------------------------------------------------------------------------------


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits() -> None:
    logits = row(1.0, 2.0, -1.0, 3.0, -0.5, 0, 0, 0, 0, 0)
    got = processed(logits, output_ids=[2, 2], prompt=[1, 1], repetition_penalty=2.0)
    np.testing.assert_allclose(got, row(1.0, 1.0, -2.0, 3.0, -0.5, 0, 0, 0, 0, 0))


def test_frequency_and_presence_penalties_count_output_tokens_only() -> None:
    logits = np.zeros(10, dtype=np.float32)
    got = processed(
        logits, output_ids=[3, 3, 4], prompt=[5], frequency_penalty=0.5, presence_penalty=0.25
    )
    expected = np.zeros(10, dtype=np.float32)
    expected[3], expected[4] = -1.25, -0.75
    np.testing.assert_allclose(got, expected)


def test_logit_bias_is_added() -> None:
    got = processed(np.zeros(10, dtype=np.float32), logit_bias={2: 5.0, 0: -100.0})
    assert (got[2], got[0], got[1]) == (5.0, -100.0, 0.0)
    assert make(temperature=0.0, logit_bias={2: 5.0}).choose(row(*[1.0] * 10), []) == 2


def test_allowed_token_ids_mask_everything_else() -> None:
    logits = row(5, 4, 3, 2, 1, 0, 0, 0, 0, 0)
    got = processed(logits, allowed_token_ids=[3, 1])
    assert np.isneginf(got[[0, 2, 4, 5]]).all() and (got[1], got[3]) == (4.0, 2.0)
    s = make(temperature=1.0, allowed_token_ids=[3, 1, 6], seed=2)
    assert set(draws(s, logits, 2_000)) == {1, 3, 6}


def test_min_tokens_masks_end_tokens_and_stop_token_ids_until_reached() -> None:
    logits = np.zeros(10, dtype=np.float32)
    s = make(logits_processors=[spy := Spy()], temperature=0.0, min_tokens=2, stop_token_ids=[4])
    for output in ([], [1], [1, 1]):
        s.choose(logits, output)
    early, late = spy.rows[1], spy.rows[2]
    assert np.isneginf(early[[END, 4]]).all() and np.isfinite(np.delete(early, [END, 4])).all()
    assert np.isfinite(late).all()


def test_ignore_eos_masks_end_tokens_for_good_but_not_stop_token_ids() -> None:
    logits = np.zeros(10, dtype=np.float32)
    got = processed(logits, output_ids=[1] * 50, ignore_eos=True, stop_token_ids=[4])
    assert np.isneginf(got[END]) and got[4] == 0.0
    assert make(temperature=0.0, ignore_eos=True).choose(row(0, 0, 0, 0, 0, 0, 0, 9, 1, 0), []) == 8


def test_named_logits_processors_run_after_the_built_in_edits() -> None:
    tokenizer = ByteTokenizer()
    built = processors.build(["no_repeat_ngram_3"], tokenizer)
    spy = Spy()
    s = make(vocab=10, temperature=0.0, logit_bias={3: 1.0}, logits_processors=[*built, spy])
    assert s.choose(np.zeros(10, dtype=np.float32), [1, 2, 3, 1, 2]) != 3  # would repeat 1 2 3
    assert np.isneginf(spy.rows[0][3])


def test_suppress_special_tokens_keeps_end_of_generation() -> None:
    tokenizer = ByteTokenizer()
    (suppress,) = processors.build(["suppress_special_tokens"], tokenizer)
    logits = np.zeros(tokenizer.vocab_size, dtype=np.float32)
    suppress([], logits)
    assert np.isneginf(logits[257:]).all() and logits[256] == 0.0 and logits[:256].max() == 0.0


def test_an_unknown_processor_name_lists_the_available_ones() -> None:
    with pytest.raises(InvalidRequestError) as refused:
        processors.build(["suppress_special_tokens", "nope"], ByteTokenizer())
    assert refused.value.param == "logits_processors[1]"
    assert "no_repeat_ngram_3" in refused.value.message


@pytest.mark.parametrize(
    ("params", "plain"),
    [
        ({"temperature": 0.0}, True),
        ({"temperature": 0.8, "top_k": 1}, True),
        ({"temperature": 0.8}, False),
        ({"temperature": 0.0, "min_tokens": 1}, False),
        ({"temperature": 0.0, "ignore_eos": True}, False),
        ({"temperature": 0.0, "logit_bias": {1: 1.0}}, False),
        ({"temperature": 0.0, "allowed_token_ids": [1]}, False),
        ({"temperature": 0.0, "repetition_penalty": 1.1}, False),
        ({"temperature": 0.0, "frequency_penalty": 0.1}, False),
        ({"temperature": 0.0, "presence_penalty": 0.1}, False),
        ({"temperature": 0.0, "logits_processors": [Spy()]}, False),
        ({"temperature": 0.0, "top_p": 0.5, "min_p": 0.1, "seed": 1}, True),
    ],
)
def test_plain_greedy_only_without_any_processing(params: dict[str, Any], plain: bool) -> None:
    assert make(**params).plain_greedy is plain


# -- logprobs_of ---------------------------------------------------------------------------------


def test_logprobs_are_normalised_and_ranked() -> None:
    logits = row(1.0, 3.0, -2.0, 2.0, 0.5, -np.inf)
    entry = logprobs_of(logits, 3, top=3)
    log_z = np.log(np.sum(np.exp(np.asarray(logits, dtype=np.float64))))
    assert entry.token_id == 3
    assert entry.logprob == pytest.approx(2.0 - log_z, abs=1e-6)
    assert entry.rank == 2
    assert [t for t, _ in entry.top] == [1, 3, 0]
    assert [lp for _, lp in entry.top] == pytest.approx([3.0 - log_z, 2.0 - log_z, 1.0 - log_z])
    full = logprobs_of(logits, 0, top=6)
    assert sum(np.exp(lp) for _, lp in full.top) == pytest.approx(1.0)
    assert full.rank == 3 and full.top[-1] == (5, -np.inf)


def test_logprobs_without_alternatives() -> None:
    entry = logprobs_of(row(0.0, 0.0), 1, top=0)
    assert entry.top == [] and entry.logprob == pytest.approx(np.log(0.5)) and entry.rank == 1


# -- the head of a large vocabulary ------------------------------------------------------------


def exact_distribution(
    logits: Row, temperature: float, min_p: float = 0.0, top_p: float = 1.0
) -> npt.NDArray[np.float64]:
    """vLLM's sampling distribution, in float64 over the whole row: softmax at the temperature,
    min_p against the best token, then the top_p nucleus."""
    w = np.exp((logits.astype(np.float64) - logits.max()) / temperature)
    w[w < min_p] = 0.0
    if top_p < 1.0:
        kept = vllm_top_p(w / w.sum(), top_p)
        w[[i for i in range(len(w)) if i not in kept]] = 0.0
    return w / w.sum()  # type: ignore[no-any-return]


def binned_chi_square(
    counts: Counter[int], probs: npt.NDArray[np.float64], n: int
) -> tuple[float, int]:
    """Chi-square over the tokens expected at least 20 times each, the rest in one bin."""
    big = [i for i in range(len(probs)) if probs[i] * n >= 20]
    rest = [i for i in range(len(probs)) if probs[i] * n < 20]
    observed = [counts.get(i, 0) for i in big] + [sum(counts.get(i, 0) for i in rest)]
    expected = [probs[i] * n for i in big] + [sum(probs[i] for i in rest) * n]
    cells = [(o, e) for o, e in zip(observed, expected, strict=True) if e > 0]
    assert sum(o for o, e in zip(observed, expected, strict=True) if e == 0) == 0
    return sum((o - e) ** 2 / e for o, e in cells), len(cells) - 1


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0.7},
        {"temperature": 1.3},
        {"temperature": 1.0, "min_p": 0.01},
        {"temperature": 1.0, "top_p": 0.6},
        {"temperature": 1.0, "top_p": 0.95},
    ],
    ids=["t0.7", "t1.3", "min_p", "top_p-in-head", "top_p-into-tail"],
)
def test_sampling_from_the_head_keeps_the_exact_distribution(
    params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Floors raised so that the tail holds much of the mass: the draws that must weigh it are
    # frequent, and a head-only shortcut would miss the tail's share by far.
    monkeypatch.setattr(sampler, "_TAIL_FLOOR", float(np.exp(-2.5)))
    monkeypatch.setattr(sampler, "_DEEP_FLOOR", float(np.exp(-4.0)))
    rng = np.random.default_rng(3)
    logits = np.concatenate([[0.0, -0.4, -1.0, -1.6], rng.uniform(-6.5, -2.0, 396)]).astype(
        np.float32
    )
    rng.shuffle(logits)
    n = 30_000
    counts = draws(make(vocab=400, seed=17, **params), logits, n)
    chi2, dof = binned_chi_square(counts, exact_distribution(logits, **params), n)
    limit = dof * (1 - 2 / (9 * dof) + 3.09 * (2 / (9 * dof)) ** 0.5) ** 3  # p = 0.001
    assert chi2 < limit, (chi2, limit)


def test_a_peaked_row_of_a_large_vocabulary_samples_from_a_small_head() -> None:
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal(150_000) * 2.5).astype(np.float32)
    logits[rng.integers(0, 150_000, 20)] += 18.0
    for params in ({"temperature": 0.7}, {"temperature": 0.7, "top_p": 0.95}):
        head = sampler._head(logits, float(logits.max()), SamplingParams(**params))
        assert head is not None and len(head.ids) < 2_000
        assert head.tail < 0.02  # the first bound: 98% of draws stay in the head at once
        head.tighten(logits)
        assert head.tail < 1e-3  # the tighter one: nearly every other draw does too
    flat = np.zeros(150_000, dtype=np.float32)  # no head worth taking: the whole row is weighed
    assert sampler._head(flat, 0.0, SamplingParams(temperature=1.0)) is None
    assert make(vocab=150_000, temperature=1.0, seed=1).choose(flat, []) in range(150_000)


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0.8, "ignore_eos": True},
        {"temperature": 0.8, "logit_bias": {3: 2.5, 9: -100.0}},
        {"temperature": 0.0, "repetition_penalty": 1.3, "frequency_penalty": 0.4},
        {"temperature": 1.0, "presence_penalty": 0.7, "min_tokens": 3, "top_p": 0.9},
    ],
)
def test_sparse_edits_in_the_row_pick_as_a_copy_would_and_leave_it_as_it_was(
    params: dict[str, Any],
) -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0.0, 2.0, 5000).astype(np.float32)
    logits[END] = logits.max() + 1.0  # the end token would win without its mask
    before = logits.copy()
    in_row = make((3, 4, 5, 3), vocab=5000, seed=4, **params)
    copied = make((3, 4, 5, 3), vocab=5000, seed=4, **params)
    copied._sparse = False  # the reference: edit a copy of the row
    assert in_row._sparse
    outputs: list[int] = []
    for _ in range(40):
        pick = in_row.choose(logits, outputs)
        assert pick == copied.choose(logits, outputs)
        assert np.array_equal(logits, before)  # bit for bit, -inf and all
        outputs.append(pick)
