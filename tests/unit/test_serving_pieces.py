"""Serving building blocks: ``merge``, response shapes, and request -> ``SamplingParams``."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from pampero.errors import ContextLengthExceeded, InvalidRequestError, UnsupportedParameter
from pampero.inference import Capabilities, TokenLogprob
from pampero.protocol import CompletionRequest, parse_completion_request
from pampero.serving.context import (
    IGNORED_HEADER_MAX,
    IGNORED_NAME_MAX,
    ignored_header,
    merge,
)
from pampero.serving.params import no_effect_fields, resolve_max_tokens, sampling_params
from pampero.serving.responses import (
    CompletionLogprobs,
    TokenNames,
    Usage,
    chat_logprobs,
    fingerprint,
    prompt_logprobs_body,
)
from tests.fakes import ByteTokenizer

TOKENIZER = ByteTokenizer()
CAPS = Capabilities(context_length=100)

# -- merge ---------------------------------------------------------------------------------------


class Source:
    """An async iterator of ``items`` that records whether it was closed; may fail at the end."""

    def __init__(self, items: list[str], *, fail: bool = False, endless: bool = False) -> None:
        self.closed = False
        self._gen = self._run(items, fail, endless)

    async def _run(self, items: list[str], fail: bool, endless: bool) -> AsyncIterator[str]:
        try:
            for item in items:
                await asyncio.sleep(0)
                yield item
            while endless:
                await asyncio.sleep(0)
                yield "more"
            if fail:
                raise RuntimeError("source failed")
        finally:
            self.closed = True

    def __aiter__(self) -> Source:
        return self

    async def __anext__(self) -> str:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()
        self.closed = True


def collect(sources: list[Source], limit: int | None = None) -> list[str]:
    async def go() -> list[str]:
        out: list[str] = []
        merged = merge(sources)
        try:
            async for item in merged:
                out.append(item)
                if limit is not None and len(out) == limit:
                    break
        finally:
            await merged.aclose()  # type: ignore[attr-defined]
        return out

    return asyncio.run(go())


def test_merge_of_one_source_passes_it_through() -> None:
    assert collect([Source(["a", "b"])]) == ["a", "b"]


def test_merge_yields_every_item_keeping_each_sources_order() -> None:
    sources = [Source([f"{n}{i}" for i in range(5)]) for n in "xyz"]
    out = collect(sources)
    assert sorted(out) == sorted(f"{n}{i}" for n in "xyz" for i in range(5))
    for n in "xyz":
        assert [o for o in out if o[0] == n] == [f"{n}{i}" for i in range(5)]
    assert out[:3] != ["x0", "x1", "x2"]  # interleaved as they come, not one after another
    assert all(s.closed for s in sources)


def test_an_error_in_one_source_ends_the_merge_and_closes_the_rest() -> None:
    sources = [Source(["a"], fail=True), Source(["b"], endless=True)]
    with pytest.raises(RuntimeError, match="source failed"):
        collect(sources)
    assert all(s.closed for s in sources)


def test_a_consumer_leaving_early_closes_every_source() -> None:
    sources = [Source([], endless=True), Source([], endless=True)]
    assert len(collect(sources, limit=3)) == 3
    assert all(s.closed for s in sources)


def test_ignored_header_lists_each_field_once() -> None:
    assert ignored_header([]) == {}
    assert ignored_header(["user", "store", "user"]) == {"x-pampero-ignored-params": "user, store"}


def _header_value_is_safe(value: str) -> bool:
    # What h11 and every proxy accept: visible ASCII and spaces, no CR/LF, no other controls.
    return all(0x20 <= ord(c) < 0x7F for c in value)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("caf\u00e9", "caf%C3%A9"),  # Latin-1 but not ASCII
        ("\u540d\u524d", "%E5%90%8D%E5%89%8D"),  # not Latin-1 at all
        ("a\r\nSet-Cookie: x=1", "a%0D%0ASet-Cookie:%20x=1"),  # header injection
        ("a,b", "a%2Cb"),  # the list separator
        ("50%", "50%25"),  # the escape character itself
        ("\ud800", "%ED%A0%80"),  # a lone surrogate from JSON's \\ud800
        ("messages[0].foo", "messages[0].foo"),
    ],
)
def test_ignored_names_are_percent_encoded_into_a_safe_header(name: str, shown: str) -> None:
    value = ignored_header([name, "user"])["x-pampero-ignored-params"]
    assert value == f"{shown}, user"
    assert _header_value_is_safe(value)
    value.encode("latin-1")


def test_a_long_ignored_name_is_cut_and_marked() -> None:
    value = ignored_header(["x" * 10_000])["x-pampero-ignored-params"]
    assert value == "x" * (IGNORED_NAME_MAX - 3) + "..."
    wide = ignored_header(["\u540d" * 1000])["x-pampero-ignored-params"]
    assert len(wide) <= IGNORED_NAME_MAX and wide.endswith("...")
    assert wide.startswith("%E5%90%8D") and "%E5%90%8D..." in wide  # cut between characters


def test_many_ignored_names_are_bounded_and_counted() -> None:
    names = [f"field_{i}" for i in range(1000)]
    value = ignored_header(names)["x-pampero-ignored-params"]
    assert len(value) <= IGNORED_HEADER_MAX
    shown = value.split(", ")
    assert shown[0] == "field_0"
    more = shown[-1]
    assert more.startswith("+") and more.endswith(" more")
    assert len(shown) - 1 + int(more[1:].split()[0]) == 1000  # every name shown or counted


# -- response shapes -----------------------------------------------------------------------------


def test_usage_body() -> None:
    body = Usage(prompt_tokens=10, completion_tokens=5, cached_tokens=4).body()
    assert (body["prompt_tokens"], body["completion_tokens"], body["total_tokens"]) == (10, 5, 15)
    assert body["prompt_tokens_details"] == {"cached_tokens": 4, "audio_tokens": 0}
    assert body["completion_tokens_details"]["reasoning_tokens"] == 0


def test_fingerprint_is_stable_per_model() -> None:
    assert fingerprint("m") == fingerprint("m") != fingerprint("n")
    assert fingerprint("m").startswith("fp_") and len(fingerprint("m")) == 13


def lp(
    token: str | int, logprob: float, top: list[tuple[int, float]], rank: int = 1
) -> TokenLogprob:
    token_id = ord(token) if isinstance(token, str) else token
    return TokenLogprob(token_id=token_id, logprob=logprob, top=top, rank=rank)


def test_chat_logprobs_shape() -> None:
    names = TokenNames(TOKENIZER, as_ids=False)
    body = chat_logprobs(names, [lp("h", -0.5, [(ord("h"), -0.5), (ord("j"), -1.5)])])
    assert body == {
        "content": [
            {
                "token": "h",
                "logprob": -0.5,
                "bytes": [104],
                "top_logprobs": [
                    {"token": "h", "logprob": -0.5, "bytes": [104]},
                    {"token": "j", "logprob": -1.5, "bytes": [106]},
                ],
            }
        ],
        "refusal": None,
    }


def test_chat_logprobs_of_a_split_character_and_of_minus_infinity() -> None:
    names = TokenNames(TOKENIZER, as_ids=False)
    (item,) = chat_logprobs(names, [lp(0xE2, -math.inf, [])])["content"]
    assert item["bytes"] == [0xE2] and item["token"] == "\ufffd"
    assert item["logprob"] == -9999.0  # JSON has no infinity
    orjson.dumps(item)


def test_tokens_as_ids() -> None:
    names = TokenNames(TOKENIZER, as_ids=True)
    assert names.entry(256, -1.0) == {
        "token": "token_id:256",
        "logprob": -1.0,
        "bytes": list(b"<|endoftext|>"),
    }


def test_completion_logprobs_shape_and_offsets() -> None:
    names = TokenNames(TOKENIZER, as_ids=False)
    out = CompletionLogprobs()
    out.add(names, [lp("a", -0.1, [(97, -0.1)]), lp("b", -2.0, [(99, -0.2), (98, -2.0)], 2)], 5)
    assert out.body() == {
        "tokens": ["a", "b"],
        "token_logprobs": [-0.1, -2.0],
        "top_logprobs": [{"a": -0.1}, {"c": -0.2, "b": -2.0}],
        "text_offset": [5, 6],
    }


def test_prompt_logprobs_body() -> None:
    names = TokenNames(TOKENIZER, as_ids=False)
    prompt = [ord("h"), ord("i")]
    assert prompt_logprobs_body(names, prompt, None) is None
    body = prompt_logprobs_body(
        names, prompt, [None, lp("i", -3.0, [(ord("o"), -0.1), (ord("i"), -3.0)], rank=2)]
    )
    assert body == [
        None,
        {
            "105": {"logprob": -3.0, "rank": 2, "decoded_token": "i"},
            "111": {"logprob": -0.1, "rank": 1, "decoded_token": "o"},
        },
    ]


def test_prompt_logprobs_keep_the_prompt_tokens_own_rank_outside_the_top() -> None:
    names = TokenNames(TOKENIZER, as_ids=False)
    (entry,) = prompt_logprobs_body(names, [ord("z")], [lp("z", -9.0, [(97, -0.1)], rank=17)])  # type: ignore[misc]
    assert entry is not None
    assert entry["122"] == {"logprob": -9.0, "rank": 17, "decoded_token": "z"}
    assert entry["97"]["rank"] == 1


# -- params --------------------------------------------------------------------------------------


def request(**fields: Any) -> CompletionRequest:
    body = orjson.dumps({"model": "m", "prompt": "hi", **fields})
    return parse_completion_request(body, strict=True).request


def params(req: CompletionRequest, caps: Capabilities = CAPS, **kw: Any) -> Any:
    options: dict[str, Any] = {"max_tokens": 10, "logprobs": None, **kw}
    return sampling_params(req, tokenizer=TOKENIZER, capabilities=caps, **options)


def test_max_tokens_defaults_to_the_room_left() -> None:
    assert resolve_max_tokens(None, 30, CAPS, "max_tokens") == 70
    assert resolve_max_tokens(70, 30, CAPS, "max_tokens") == 70


@pytest.mark.parametrize(
    ("requested", "n_prompt", "param"),
    [(71, 30, "max_completion_tokens"), (None, 100, "messages"), (5, 120, "messages")],
)
def test_max_tokens_beyond_the_context_is_refused(
    requested: int | None, n_prompt: int, param: str
) -> None:
    with pytest.raises(ContextLengthExceeded) as refused:
        resolve_max_tokens(requested, n_prompt, CAPS, "max_completion_tokens")
    assert refused.value.code == "context_length_exceeded"
    assert refused.value.param == param
    assert "maximum context length is 100 tokens" in refused.value.message


def test_request_fields_map_to_vllm_semantics() -> None:
    p = params(
        request(
            top_k=-1, seed=3, stop="END", logit_bias={"65": 2}, stop_token_ids=[256], min_tokens=2
        )
    )
    assert (p.temperature, p.top_p, p.top_k, p.min_p, p.repetition_penalty) == (1.0, 1.0, 0, 0, 1)
    assert (p.seed, p.stop, p.logit_bias, p.stop_token_ids, p.min_tokens) == (
        3,
        ["END"],
        {65: 2.0},
        [256],
        2,
    )
    assert p.max_tokens == 10 and p.logits_processors == []


def test_named_processors_are_built() -> None:
    (processor,) = params(request(logits_processors=["no_repeat_ngram_3"])).logits_processors
    assert callable(processor)


@pytest.mark.parametrize(
    ("fields", "error", "param"),
    [
        ({"length_penalty": 0.5}, InvalidRequestError, "length_penalty"),
        ({"stop_token_ids": [1, 260]}, InvalidRequestError, "stop_token_ids[1]"),
        ({"allowed_token_ids": [99999]}, InvalidRequestError, "allowed_token_ids[0]"),
        ({"logit_bias": {"5000": 1}}, InvalidRequestError, "logit_bias[0]"),
        ({"logits_processors": ["nope"]}, InvalidRequestError, "logits_processors[0]"),
        ({"min_tokens": 11}, InvalidRequestError, "min_tokens"),
    ],
)
def test_requests_the_model_cannot_honour_are_refused(
    fields: dict[str, Any], error: type[Exception], param: str
) -> None:
    with pytest.raises(error) as refused:
        params(request(**fields))
    assert refused.value.param == param  # type: ignore[attr-defined]


def test_capabilities_refuse_what_the_engine_lacks() -> None:
    lacking = Capabilities(
        context_length=100,
        supports_logprobs=False,
        supports_prompt_logprobs=False,
        supports_beam_search=False,
    )
    for fields, kw, param in [
        ({"use_beam_search": True}, {}, "use_beam_search"),
        ({}, {"logprobs": 2}, "logprobs"),
        ({"prompt_logprobs": 1}, {}, "prompt_logprobs"),
    ]:
        with pytest.raises(UnsupportedParameter) as refused:
            params(request(**fields), lacking, **kw)
        assert refused.value.param == param
    assert params(request(use_beam_search=True, length_penalty=0.5)).use_beam_search


def test_fields_without_effect_are_reported() -> None:
    sent = request(request_id="r-1", user="u", seed=1)
    assert no_effect_fields(sent) == ["user", "request_id"]
