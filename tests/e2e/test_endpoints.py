"""The endpoints around generation: models, health, metrics, tokenize and detokenize."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.e2e.harness import CONFIG, MODEL_EXTRAS, MODEL_ID, check_error
from tests.spec.validate import validate_against

pytestmark = pytest.mark.e2e


def configured_names() -> list[str]:
    (entry,) = yaml.safe_load(CONFIG.read_text())["models"]
    return [entry["id"], *entry["aliases"]]


def test_models_lists_the_model_and_every_alias(api):
    response = api.http.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    validate_against("ListModelsResponse", body, allow_extra=MODEL_EXTRAS)
    cards = {card["id"]: card for card in body["data"]}
    assert sorted(cards) == sorted(configured_names())
    for name, card in cards.items():
        assert card["root"] == MODEL_ID
        assert card["parent"] == (None if name == MODEL_ID else MODEL_ID)
        assert card["context_length"] == card["max_model_len"] == 4096
        assert card["capabilities"]["chat"] is True
        assert isinstance(card["capabilities"]["structured_outputs"], bool)


@pytest.mark.parametrize("name", [MODEL_ID, "Qwen/Qwen3-1.7B", "gpt-4o"])
def test_model_by_id_with_a_slash(api, name):
    response = api.http.get(f"/v1/models/{name}")
    assert response.status_code == 200
    card = response.json()
    validate_against("Model", card, allow_extra=MODEL_EXTRAS)
    assert card["id"] == name
    assert card["object"] == "model"
    assert card["context_length"] == 4096
    assert set(card["capabilities"]) >= {"chat", "logprobs", "beam_search", "structured_outputs"}


def test_unknown_model_card_is_404(api):
    error = check_error(api.http.get("/v1/models/no/such-model"), 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"


def test_health(api):
    response = api.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


HISTOGRAMS = ("pampero_time_to_first_token_seconds", "pampero_inter_token_latency_seconds")


def test_metrics_move_after_a_request(api):
    before = api.metrics()
    for family in ("pampero_requests", "pampero_prompt_tokens", "pampero_generation_tokens"):
        assert before.families[family].type == "counter", family
    for family in ("pampero_requests_running", "pampero_requests_waiting"):
        assert before.families[family].type == "gauge", family
    for family in HISTOGRAMS:
        assert before.families[family].type == "histogram", family
    route = {"route": "/v1/chat/completions", "status": "200"}

    usage = api.chat("Name three colors.", max_tokens=6, ignore_eos=True)["usage"]

    deadline = time.monotonic() + 2  # the request counter is bumped once the response is out
    after = api.metrics()
    while (
        after.value("pampero_requests_total", **route)
        == before.value("pampero_requests_total", **route)
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
        after = api.metrics()

    def moved(sample: str) -> float:
        return after.value(sample, model=MODEL_ID) - before.value(sample, model=MODEL_ID)

    assert after.value("pampero_requests_total", **route) == (
        before.value("pampero_requests_total", **route) + 1
    )
    assert moved("pampero_prompt_tokens_total") == usage["prompt_tokens"]
    assert moved("pampero_generation_tokens_total") == usage["completion_tokens"] == 6
    assert moved("pampero_time_to_first_token_seconds_count") == 1
    assert 1 <= moved("pampero_inter_token_latency_seconds_count") <= 5
    assert moved("pampero_time_to_first_token_seconds_sum") > 0
    assert after.value("pampero_requests_running", model=MODEL_ID) == 0
    assert after.value("pampero_requests_waiting", model=MODEL_ID) == 0
    assert api.http.get("/metrics").headers["content-type"].startswith("text/plain")


def test_tokenize_prompt_form_and_detokenize_round_trip(api):
    text = "def greet(name):\n    return f'¡Hola, {name}!'"
    body = api.tokenize(model=MODEL_ID, prompt=text, return_token_strs=True)
    assert set(body) == {"count", "max_model_len", "tokens", "token_strs"}
    assert body["count"] == len(body["tokens"]) == len(body["token_strs"]) > 5
    assert body["max_model_len"] == 4096
    assert all(isinstance(t, int) for t in body["tokens"])
    assert api.detokenize(body["tokens"]) == text
    without_strs = api.tokenize(prompt=text)  # model is optional, as in vLLM
    assert "token_strs" not in without_strs
    assert without_strs["tokens"] == body["tokens"]


def test_tokenize_messages_form_counts_the_chat_prompt(api):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2 + 2?"},
    ]
    body = api.tokenize(model="gpt-4o", messages=messages)
    assert body["count"] == len(body["tokens"])
    usage = api.chat(messages=messages, max_tokens=1)["usage"]
    assert usage["prompt_tokens"] == body["count"]
    rendered = api.detokenize(body["tokens"])
    assert rendered.startswith("<|im_start|>system\nYou are terse.<|im_end|>")
    assert rendered.endswith("<|im_start|>assistant\n")
    bare = api.tokenize(messages=messages, add_generation_prompt=False)
    assert body["tokens"][: bare["count"]] == bare["tokens"]
    assert not api.detokenize(bare["tokens"]).endswith("<|im_start|>assistant\n")


def test_tokenize_errors(api):
    both = check_error(api.post("/tokenize", {"prompt": "a", "messages": []}), 400)
    assert both["param"] == "messages"
    neither = check_error(api.post("/tokenize", {"model": MODEL_ID}), 400)
    assert neither["param"] == "prompt"
    outside = check_error(api.post("/detokenize", {"tokens": [1, 10**7]}), 400)
    assert outside["param"] == "tokens[1]"
