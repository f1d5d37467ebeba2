"""The transformers engine on the tiny vision-language model (and a tiny text-only model)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pampero.dev.tiny_vlm import TinyVLM
from pampero.engines import registry
from pampero.engines.base import Engine
from pampero.errors import ContextLengthExceeded, InvalidRequestError, Overloaded
from pampero.inference import (
    IMAGE_PLACEHOLDER_ID,
    GenerationRequest,
    SamplingParams,
    tokenize_with_images,
)
from pampero.serving.hub import engine_options
from pampero.settings import ModelConfig, Settings
from tests.vision.support import LoopThread, Outcome, collect, noise_image

pytest.importorskip("torch")
pytest.importorskip("transformers")

MARKER = "<image-7f3a>"
CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
IMAGE_PAD, VISION_START, VISION_END = 151655, 151652, 151653


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def start(loop: LoopThread, path: Path, **settings: object) -> Engine:
    config = ModelConfig(id="tiny", path=str(path), engine="transformers")
    engine = registry.create(
        "transformers", engine_options(config, Settings(threads=1, **settings))
    )
    loop.run(engine.start())
    return engine


@pytest.fixture(scope="module")
def engine(loop: LoopThread, tiny_vlm: TinyVLM) -> Iterator[Engine]:
    started = start(loop, tiny_vlm.hf_dir, n_ctx=512)
    yield started
    loop.run(started.stop())


def request(engine: Engine, text: str, images: int = 0, **params: object) -> GenerationRequest:
    tokens = tokenize_with_images(engine.tokenizer, CHAT.format(text), MARKER)
    pictures = [noise_image(80, 60, seed=i) for i in range(images)]
    return GenerationRequest("r", tokens, SamplingParams(**params), images=pictures)  # type: ignore[arg-type]


def run(loop: LoopThread, engine: Engine, generation: GenerationRequest) -> Outcome:
    return loop.run(collect(engine, generation))


# -- what the engine says about itself ------------------------------------------------------------


def test_capabilities_of_a_vision_model(engine: Engine) -> None:
    caps = engine.capabilities
    assert caps.supports_images and caps.supports_logprobs and caps.supports_prompt_logprobs
    assert not caps.supports_beam_search
    assert caps.context_length == 512
    assert engine.chat_template is not None and "<|image_pad|>" in engine.chat_template


def test_the_tokenizer_matches_the_gguf_copy(engine: Engine, tiny_vlm: TinyVLM) -> None:
    from pampero.engines.llamacpp.tokenizer import load_vocab_only

    gguf = load_vocab_only(tiny_vlm.model_gguf)
    tok = engine.tokenizer
    assert tok.vocab_size == gguf.vocab_size == 151936
    assert all(tok.token_bytes(i) == gguf.token_bytes(i) for i in range(tok.vocab_size))
    for text in ("Grüße 世界 😀 <|im_start|>user\n\tx = 1", "  a <tool_call> b"):
        for parse_special in (True, False):
            assert tok.encode(text, parse_special=parse_special) == gguf.encode(
                text, parse_special=parse_special
            )
    assert tok.decode(tok.encode("<|im_end|>hé")) == "hé"
    assert tok.is_special(151645) and not tok.is_special(151657)  # <|im_end|>, <tool_call>
    assert {151645, 151643} <= tok.eog_token_ids
    assert tok.fim_token_ids == gguf.fim_token_ids


# -- text and images ------------------------------------------------------------------------------


def test_a_text_prompt(loop: LoopThread, engine: Engine) -> None:
    generation = request(engine, "Hello", max_tokens=6, temperature=0.0)
    out = run(loop, engine, generation)
    choice = out.only
    assert out.prompt_tokens == len(generation.prompt_tokens)
    assert len(choice.token_ids) == 6 and choice.finish_reason == "length"
    assert choice.text == engine.tokenizer.decode(choice.token_ids)


def test_an_image_prompt_counts_the_image_tokens(loop: LoopThread, engine: Engine) -> None:
    generation = request(engine, f"What is in {MARKER}?", images=1, max_tokens=3, temperature=0.0)
    assert generation.prompt_tokens.count(IMAGE_PLACEHOLDER_ID) == 1
    out = run(loop, engine, generation)
    # <|vision_start|>, 12 image tokens (80x60 -> 112x84 -> 8x6 patches merged 2x2),
    # <|vision_end|> in place of the one placeholder.
    assert out.prompt_tokens == len(generation.prompt_tokens) - 1 + 14
    assert len(out.only.token_ids) == 3


def test_the_image_changes_what_the_model_reads(loop: LoopThread, engine: Engine) -> None:
    def first_logprob(seed: int) -> float:
        generation = request(
            engine, f"{MARKER} and", images=1, max_tokens=1, temperature=0.0, logprobs=0
        )
        generation.images = [noise_image(80, 60, seed=seed)]
        return run(loop, engine, generation).only.logprobs[0].logprob

    assert first_logprob(1) == first_logprob(1)
    assert first_logprob(1) != first_logprob(2)


def test_several_images_and_sizes(loop: LoopThread, engine: Engine) -> None:
    generation = request(engine, f"{MARKER} then {MARKER}", images=2, max_tokens=2)
    generation.images = [noise_image(80, 60), noise_image(300, 200, seed=5)]
    out = run(loop, engine, generation)
    # 300x200 -> 308x196 -> 22x14 patches -> 77 tokens, plus 12 for the first, plus 2 x 2 wraps.
    assert out.prompt_tokens == len(generation.prompt_tokens) - 2 + 12 + 77 + 4
    assert out.only.finish_reason == "length"


def test_image_places_and_images_must_agree(loop: LoopThread, engine: Engine) -> None:
    generation = request(engine, f"{MARKER} and {MARKER}", images=1, max_tokens=2)
    with pytest.raises(InvalidRequestError, match="2 image places but 1 images"):
        run(loop, engine, generation)


# -- sampling parameters --------------------------------------------------------------------------


def test_seeded_sampling_is_reproducible(loop: LoopThread, engine: Engine) -> None:
    def tokens(seed: int) -> list[int]:
        generation = request(engine, "Tell me", max_tokens=8, temperature=1.0, seed=seed)
        return run(loop, engine, generation).only.token_ids

    assert tokens(11) == tokens(11)
    assert tokens(11) != tokens(12)


def test_n_choices_differ_and_each_is_reproducible(loop: LoopThread, engine: Engine) -> None:
    def outcome() -> Outcome:
        return run(loop, engine, request(engine, "Hi", n=2, max_tokens=6, seed=5))

    first, second = outcome(), outcome()
    assert sorted(first.choices) == [0, 1]
    assert first.choices[0].token_ids != first.choices[1].token_ids
    assert [c.token_ids for c in first.choices.values()] == [
        c.token_ids for c in second.choices.values()
    ]


def test_stop_strings_cut_the_text(loop: LoopThread, engine: Engine) -> None:
    free = run(loop, engine, request(engine, "Go", max_tokens=12, seed=3)).only
    text = free.text
    assert len(text) > 6
    stop = text[4:6]
    cut = run(loop, engine, request(engine, "Go", max_tokens=12, seed=3, stop=[stop])).only
    assert cut.text == text[: text.index(stop)]
    assert (cut.finish_reason, cut.stop_reason) == ("stop", stop)
    kept = run(
        loop,
        engine,
        request(engine, "Go", max_tokens=12, seed=3, stop=[stop], include_stop_str_in_output=True),
    ).only
    assert kept.text == text[: text.index(stop) + len(stop)]


def test_stop_token_ids(loop: LoopThread, engine: Engine) -> None:
    free = run(loop, engine, request(engine, "Go", max_tokens=10, seed=4)).only
    target = free.token_ids[3]
    cut = run(
        loop, engine, request(engine, "Go", max_tokens=10, seed=4, stop_token_ids=[target])
    ).only
    assert cut.token_ids == free.token_ids[: free.token_ids.index(target) + 1]
    assert (cut.finish_reason, cut.stop_reason) == ("stop", target)


def test_logprobs_of_greedy_choices(loop: LoopThread, engine: Engine) -> None:
    out = run(loop, engine, request(engine, "Hi", max_tokens=4, temperature=0.0, logprobs=3)).only
    assert len(out.logprobs) == 4
    for token, entry in zip(out.token_ids, out.logprobs, strict=True):
        assert entry.token_id == token and entry.rank == 1
        assert entry.top[0][0] == token and len(entry.top) == 3
        values = [v for _, v in entry.top]
        assert values == sorted(values, reverse=True) and entry.logprob == values[0] < 0


def test_prompt_logprobs(loop: LoopThread, engine: Engine) -> None:
    generation = request(engine, f"See {MARKER}", images=1, max_tokens=1, prompt_logprobs=2)
    out = run(loop, engine, generation)
    assert out.prompt_logprobs is not None and len(out.prompt_logprobs) == out.prompt_tokens
    assert out.prompt_logprobs[0] is None
    assert all(e is not None and len(e.top) == 2 for e in out.prompt_logprobs[1:])


def test_logit_bias_steers_greedy_decoding(loop: LoopThread, engine: Engine) -> None:
    out = run(
        loop, engine, request(engine, "Hi", max_tokens=3, temperature=0.0, logit_bias={9707: 100.0})
    ).only
    assert out.token_ids == [9707, 9707, 9707]  # "Hello"
    assert out.text == "HelloHelloHello"


def test_ignore_eos_and_end_tokens(loop: LoopThread, engine: Engine) -> None:
    end = run(
        loop,
        engine,
        request(engine, "Hi", max_tokens=5, temperature=0.0, logit_bias={151645: 100.0}),
    ).only
    assert (end.token_ids, end.text, end.finish_reason) == ([151645], "", "stop")
    ignored = run(
        loop,
        engine,
        request(
            engine, "Hi", max_tokens=5, temperature=0.0, logit_bias={151645: 100.0}, ignore_eos=True
        ),
    ).only
    assert len(ignored.token_ids) == 5 and 151645 not in ignored.token_ids


def test_the_context_length_is_enforced(loop: LoopThread, engine: Engine) -> None:
    too_long = request(engine, "word " * 600, max_tokens=2)
    with pytest.raises(ContextLengthExceeded):
        engine.generate(too_long)
    # 500 text tokens fit, the image's 14 more do not: the error comes from the stream.
    near = request(engine, "word " * 490 + MARKER, images=1, max_tokens=2)
    assert len(near.prompt_tokens) < 512
    with pytest.raises(ContextLengthExceeded):
        run(loop, engine, near)
    # Generation stops at the end of the context.
    edge = request(engine, "word " * 495, temperature=0.0, ignore_eos=True)
    out = run(loop, engine, edge)
    assert out.only.finish_reason == "length"
    assert out.prompt_tokens + len(out.only.token_ids) == 512


def test_beam_search_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidRequestError, match="beam"):
        engine.generate(request(engine, "Hi", use_beam_search=True, n=2))


# -- scheduling, cancellation ---------------------------------------------------------------------


def test_closing_the_stream_cancels_within_a_step(loop: LoopThread, engine: Engine) -> None:
    async def go() -> None:
        stream = engine.generate(request(engine, "Go on", max_tokens=400, ignore_eos=True))
        await stream.__anext__()
        await stream.aclose()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while engine.stats().running and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert engine.stats().running == 0
        after = await collect(engine, request(engine, "Hi", max_tokens=2))
        assert len(after.only.token_ids) == 2

    loop.run(go())


def test_priority_orders_the_waiting_requests(loop: LoopThread, engine: Engine) -> None:
    finished: list[str] = []

    async def one(name: str, priority: int, max_tokens: int) -> None:
        generation = request(engine, name, max_tokens=max_tokens, ignore_eos=True)
        generation.priority = priority
        await collect(engine, generation)
        finished.append(name)

    async def go() -> None:
        first = asyncio.create_task(one("first", 0, 60))
        while engine.stats().running == 0:  # once it runs, the next two must wait
            await asyncio.sleep(0.005)
        await asyncio.gather(first, one("later", 5, 2), one("sooner", -1, 2))

    loop.run(go())
    assert finished == ["first", "sooner", "later"]


def test_a_full_queue_is_overloaded(loop: LoopThread, tiny_vlm: TinyVLM) -> None:
    busy = start(loop, tiny_vlm.hf_dir, max_queue=0, n_ctx=512)
    try:

        async def go() -> None:
            stream = busy.generate(request(busy, "Go", max_tokens=300, ignore_eos=True))
            await stream.__anext__()
            with pytest.raises(Overloaded):
                busy.generate(request(busy, "Hi", max_tokens=2))
            await stream.aclose()  # type: ignore[attr-defined]

        loop.run(go())
    finally:
        loop.run(busy.stop())


def test_a_batch_is_queued_whole_or_not_at_all(loop: LoopThread, tiny_vlm: TinyVLM) -> None:
    busy = start(loop, tiny_vlm.hf_dir, max_queue=1, n_ctx=512)
    try:

        async def go() -> None:
            with pytest.raises(InvalidRequestError) as never:  # more than 1 running + 1 queued
                busy.generate_batch([request(busy, "Hi", max_tokens=2) for _ in range(3)])
            assert never.value.param == "prompt"
            stream = busy.generate(request(busy, "Go", max_tokens=300, ignore_eos=True))
            await stream.__anext__()
            with pytest.raises(Overloaded):  # one would fit in the queue, two do not
                busy.generate_batch([request(busy, "Hi", max_tokens=2) for _ in range(2)])
            assert busy.stats().waiting == 0
            await stream.aclose()  # type: ignore[attr-defined]

        loop.run(go())
    finally:
        loop.run(busy.stop())


# -- a text-only model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_model(tiny_vlm: TinyVLM, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny-text")
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_vlm.hf_dir / name, out / name)
    settings = json.loads((out / "tokenizer_config.json").read_text())
    settings.pop("processor_class", None)
    (out / "tokenizer_config.json").write_text(json.dumps(settings))
    return out


def test_a_text_only_model(loop: LoopThread, text_model: Path) -> None:
    engine = start(loop, text_model)
    try:
        assert not engine.capabilities.supports_images
        assert engine.capabilities.context_length == 256  # the model's own limit
        out = run(loop, engine, request(engine, "Hi", max_tokens=4, seed=1))
        assert len(out.only.token_ids) == 4
        with pytest.raises(InvalidRequestError, match="does not accept image input"):
            engine.generate(request(engine, f"{MARKER}", images=1))
    finally:
        loop.run(engine.stop())
