"""Every sampling parameter takes effect on the real model (temperature 0 unless said)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(exact_api):
    """Every test here compares answers exactly: see ``exact_server`` in conftest."""
    return exact_api


COUNT = "Count from 1 to 20, separated by commas."
SKY = "Answer with one word: what color is the sky?"  # greedy: "blue", then end of turn
LA = "Write 'la la la la la la la la' and keep going."  # greedy: "la" over and over
POEM = "Write a short poem about the sea."


def text(body, index=0):
    return body["choices"][index]["message"]["content"]


def token_ids(body, index=0):
    """Generated token ids, from logprobs with ``return_tokens_as_token_ids``."""
    entries = body["choices"][index]["logprobs"]["content"]
    return [int(re.fullmatch(r"token_id:(\d+)", e["token"]).group(1)) for e in entries]


def ids_request(api, prompt, **fields):
    return api.chat(prompt, logprobs=True, return_tokens_as_token_ids=True, **fields)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_token_budget_ends_the_completion(api, field):
    body = api.chat(COUNT, **{"max_tokens": None, field: 5})
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5


def test_max_tokens_null_runs_until_the_model_stops(api):
    body = api.chat(SKY, max_tokens=None)
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["stop_reason"] is None
    assert 0 < body["usage"]["completion_tokens"] < 10
    assert "blue" in text(body).lower()


def test_stop_strings_cut_the_text(api):
    base = text(api.chat(COUNT, max_tokens=16))
    assert "5" in base and ", 4" in base, base
    single = api.chat(COUNT, max_tokens=16, stop="5")
    assert text(single) == base[: base.index("5")]
    assert single["choices"][0]["finish_reason"] == "stop"
    assert single["choices"][0]["stop_reason"] == "5"
    listed = api.chat(COUNT, max_tokens=16, stop=["7", ", 4"])  # the earliest match wins
    assert text(listed) == base[: base.index(", 4")]
    assert listed["choices"][0]["stop_reason"] == ", 4"
    kept = api.chat(COUNT, max_tokens=16, stop=["7", ", 4"], include_stop_str_in_output=True)
    assert text(kept) == base[: base.index(", 4") + len(", 4")]
    assert kept["choices"][0]["stop_reason"] == ", 4"


def test_stop_token_ids(api):
    base = ids_request(api, COUNT, max_tokens=12)
    ids = token_ids(base)
    position = next(i for i in range(2, len(ids)) if ids[i] not in ids[:i])
    stopped = api.chat(COUNT, max_tokens=12, stop_token_ids=[ids[position]])
    choice = stopped["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["stop_reason"] == ids[position]
    assert stopped["usage"]["completion_tokens"] == position + 1
    assert choice["message"]["content"] == api.detokenize(ids[:position])


def test_same_seed_same_text_and_other_seeds_differ(api):
    fields = {"temperature": 1.0, "max_tokens": 10}
    first = text(api.chat(POEM, seed=1234, **fields))
    assert text(api.chat(POEM, seed=1234, **fields)) == first
    assert any(text(api.chat(POEM, seed=seed, **fields)) != first for seed in (1, 2, 3))


def test_temperature_zero_is_deterministic(api):
    outputs = {text(api.chat(POEM, max_tokens=16, temperature=0)) for _ in range(3)}
    assert len(outputs) == 1


@pytest.mark.parametrize(
    "fields", [{"top_k": 1}, {"top_p": 1e-6}, {"min_p": 1.0}], ids=["top_k", "top_p", "min_p"]
)
def test_truncation_to_the_best_token_is_greedy(api, fields):
    greedy = text(api.chat(POEM, max_tokens=16, temperature=0))
    assert text(api.chat(POEM, max_tokens=16, temperature=1.5, **fields)) == greedy


def test_top_k_keeps_every_draw_among_the_k_best(api):
    body = api.chat(
        POEM, max_tokens=24, temperature=2.0, top_k=2, seed=5, logprobs=True, top_logprobs=2
    )
    for entry in body["choices"][0]["logprobs"]["content"]:
        assert entry["token"] in [t["token"] for t in entry["top_logprobs"]], entry


@pytest.mark.parametrize(
    "penalty",
    [{"presence_penalty": 2.0}, {"frequency_penalty": 2.0}, {"repetition_penalty": 1.5}],
    ids=lambda p: next(iter(p)),
)
def test_penalties_change_greedy_output_on_a_repetitive_prompt(api, penalty):
    base = text(api.chat(LA, max_tokens=24))
    assert base.count("la") >= 10, base
    assert text(api.chat(LA, max_tokens=24, **penalty)) != base


def test_logit_bias_forces_and_bans_tokens(api):
    (banana,) = api.tokenize(prompt=" banana")["tokens"]
    forced = ids_request(api, SKY, max_tokens=4, logit_bias={str(banana): 100})
    assert token_ids(forced) == [banana] * 4
    assert text(forced) == " banana" * 4
    greedy = ids_request(api, SKY, max_tokens=3)
    first = token_ids(greedy)[0]
    banned = ids_request(api, SKY, max_tokens=3, logit_bias={str(first): -100})
    assert token_ids(banned)[0] != first


def test_allowed_token_ids_restrict_every_token(api):
    allowed = sorted(set(api.tokenize(prompt="0 1 2 3 4 5 6 7 8 9 ,")["tokens"]))
    body = ids_request(api, POEM, max_tokens=10, temperature=1.0, allowed_token_ids=allowed)
    generated = token_ids(body)
    assert len(generated) == 10
    assert set(generated) <= set(allowed), generated


def test_ignore_eos_generates_past_the_end_of_turn(api):
    natural = api.chat(SKY, max_tokens=12)
    assert natural["usage"]["completion_tokens"] < 12
    forced = api.chat(SKY, max_tokens=12, ignore_eos=True)
    assert forced["usage"]["completion_tokens"] == 12
    assert forced["choices"][0]["finish_reason"] == "length"


def test_min_tokens_holds_off_the_end(api):
    body = api.chat(SKY, max_tokens=30, min_tokens=8)
    assert body["usage"]["completion_tokens"] >= 8


def test_min_tokens_with_ignore_eos(api):
    body = api.chat(SKY, max_tokens=10, min_tokens=10, ignore_eos=True)
    assert body["usage"]["completion_tokens"] == 10


def test_n_returns_n_distinct_choices(api):
    body = api.chat(POEM, n=3, temperature=1.0, seed=11, max_tokens=12)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert len({text(body, i) for i in range(3)}) > 1
    per_choice = [c["finish_reason"] for c in body["choices"]]
    assert body["usage"]["completion_tokens"] <= 3 * 12
    assert set(per_choice) <= {"stop", "length"}


def test_no_repeat_ngram_logits_processor(api):
    def repeated_trigram(ids):
        grams = [tuple(ids[i : i + 3]) for i in range(len(ids) - 2)]
        return len(grams) != len(set(grams))

    assert repeated_trigram(token_ids(ids_request(api, LA, max_tokens=20)))
    body = ids_request(api, LA, max_tokens=20, logits_processors=["no_repeat_ngram_3"])
    assert not repeated_trigram(token_ids(body))
