"""What every engine that accepts images must do when served: one suite, run over each engine.

``test_serve_llamacpp.py`` (GGUF + mmproj) and ``test_serve_transformers.py`` (the Hugging Face
copy) each start a real ``pampero serve`` on the tiny random Qwen2-VL in a module-scoped
``vlm`` fixture (see ``serving``) and subclass ``ServeContract``. The servers allow-list
exactly 127.0.0.1, where the ``image_host`` fixture serves the pictures of ``pictures.py``;
127.0.0.2 (the ``canary``) stays blocked.

The model is random, so its words mean nothing. What is checked is what a client can rely on:
OpenAI's response shapes (``tests/spec/validate.py`` through the e2e ``Api``), prompt token
counts that include each image at the size Qwen2-VL gives it (``Picture.tokens``), answers that
depend on the pixels and their order (first-token distributions), streaming framing, ``n``,
constrained decoding, the seeds' own examples, and a clear 400 naming the part for every image
that cannot be used.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import openai
import pytest

from pampero.dev.tiny_vlm import SERVED_ID
from pampero.media import codes
from tests.e2e.harness import (
    MODEL_EXTRAS,
    Api,
    Launcher,
    Server,
    SnippetRun,
    check_chat,
    run_snippets,
)
from tests.image_server import Server as ImageServer
from tests.spec.validate import validate_against
from tests.vision.pictures import (
    BLACK,
    BOMB,
    PICTURES,
    SEED_000_PHOTO,
    SEED_004_PHOTO,
    SQUARE,
    TALL,
    WHITE,
    WIDE,
    Picture,
)
from tests.vision.seed_snippets import SNIPPETS

MODEL = SERVED_ID
# Small, so that seed 004's ``max_tokens: null`` (generate until the context is full: this model
# never chooses to stop) stays short. The largest prompt here (WIDE at full detail) fits.
N_CTX = 256
MAX_IMAGES = 4
# Fetches from the loopback host take milliseconds; the timeout case waits this long.
MEDIA_TIMEOUT_S = 2
PART = "messages[0].content[1].image_url"  # where ``ask`` puts the image


def served_flags(key: str) -> tuple[str, ...]:
    return (
        "--api-key", key,
        "--media-allow", "127.0.0.1",
        "--media-timeout", str(MEDIA_TIMEOUT_S),
        "--media-max-images", str(MAX_IMAGES),
        "--n-ctx", str(N_CTX),
    )  # fmt: skip


@dataclass
class Vision:
    """A vision model served for real, and the loopback hosts its image URLs point at."""

    server: Server
    api: Api  # sends the key, asks for MODEL, validates every answer
    key: str
    images: ImageServer
    canary: ImageServer

    def url(self, picture: Picture) -> str:
        return self.images.url(f"/files/{picture.name}")

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.server.url + "/v1", api_key=self.key, max_retries=0)


@contextmanager
def serving(
    launch: Launcher, model: tuple[str, ...], images: ImageServer, canary: ImageServer
) -> Iterator[Vision]:
    """``pampero serve`` with ``model`` (its ``--model`` flags) and ``served_flags``."""
    key = "sk-vision-" + secrets.token_hex(8)
    with launch(*model, *served_flags(key)) as server:
        api = server.api(key=key, model=MODEL)
        try:
            yield Vision(server, api, key, images, canary)
        finally:
            api.close()


# -- building requests ----------------------------------------------------------------------------


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def image(url: str, detail: str | None = None) -> dict[str, Any]:
    inner: dict[str, Any] = {"url": url}
    if detail is not None:
        inner["detail"] = detail
    return {"type": "image_url", "image_url": inner}


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


def ask(url: str, question: str = "What is in this picture?", **detail: str) -> list[Any]:
    """One user message: ``question``, then the image (the part ``PART`` names)."""
    return [user(text(question), image(url, **detail))]


STAND_IN = text("x")  # one token, whatever its neighbours: parts are joined by newlines


def _picture(part: dict[str, Any]) -> tuple[Picture, str]:
    """The picture an image part of these tests shows, and at which detail."""
    field = part["image_url"]
    url, detail = (field, "auto") if isinstance(field, str) else (field["url"], field.get("detail"))
    for picture in PICTURES:
        if url == picture.data_uri or url.endswith(f"/files/{picture.name}"):
            return picture, detail or "auto"
    raise AssertionError(f"not a picture of pictures.py: {url[:80]}")


def expected_tokens(vlm: Vision, messages: list[dict[str, Any]]) -> int:
    """The prompt tokens of ``messages`` as the model must count them: the conversation with a
    one-token text part in place of each image (so the text around an image tokenizes as it
    does around the image), less those stand-ins, plus each picture's tokens."""
    shown: list[tuple[Picture, str]] = []
    stood_in = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            shown += [_picture(p) for p in content if p["type"] != "text"]
            content = [p if p["type"] == "text" else STAND_IN for p in content]
        stood_in.append({**message, "content": content})
    count: int = vlm.api.tokenize(model=MODEL, messages=stood_in)["count"]
    return count + sum(picture.tokens(detail) - 1 for picture, detail in shown)


def prompt_tokens(vlm: Vision, messages: list[dict[str, Any]], **fields: Any) -> int:
    count: int = vlm.api.chat(messages=messages, max_tokens=1, **fields)["usage"]["prompt_tokens"]
    return count


def first_token(vlm: Vision, messages: list[dict[str, Any]]) -> dict[str, float]:
    """The model's 20 likeliest first tokens (as ids) and their logprobs."""
    body = vlm.api.chat(
        messages=messages,
        max_tokens=1,
        logprobs=True,
        top_logprobs=20,
        return_tokens_as_token_ids=True,
    )
    (entry,) = body["choices"][0]["logprobs"]["content"]
    return {alt["token"]: alt["logprob"] for alt in entry["top_logprobs"]}


def _shift(a: dict[str, float], b: dict[str, float]) -> float:
    """How far two first-token distributions are apart: the largest logprob change among the
    tokens both rank in their top 20 (infinite when fewer than 15 are shared)."""
    shared = a.keys() & b.keys()
    return max(abs(a[t] - b[t]) for t in shared) if len(shared) >= 15 else float("inf")


# Reading the same prompt twice gives the same logprobs here (reused KV may move them in the
# third decimal); another picture, or the same pictures in another order, moves them by 0.04
# (order) to 0.12 (white for black) in this model.
def same_answer(a: dict[str, float], b: dict[str, float]) -> bool:
    return _shift(a, b) < 0.01


def different_answer(a: dict[str, float], b: dict[str, float]) -> bool:
    return _shift(a, b) > 0.025


def refused(vlm: Vision, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` (the model and a small budget added); the OpenAI 400 error object."""
    full = {"model": MODEL, "max_tokens": 4, **body}
    return vlm.api.error("/v1/chat/completions", full, 400)


def refused_part(vlm: Vision, messages: list[dict[str, Any]], code: str, param: str = PART) -> str:
    """A 400 whose ``param`` and message both name the part; its message."""
    error = refused(vlm, {"messages": messages})
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        code,
        param,
    ), error
    assert param in error["message"], error
    message: str = error["message"]
    return message


# -- what cannot be used: one row per way, each a 400 naming messages[0].content[1].image_url ----


@dataclass(frozen=True)
class Refusal:
    name: str
    url: Callable[[Vision], str]
    code: str
    says: str  # a phrase the message must contain


def _via_redirect(vlm: Vision) -> str:
    return vlm.images.url("/to?u=" + quote(vlm.canary.url("/files/white.png"), safe=""))


REFUSALS = [
    Refusal("file-scheme", lambda v: "file:///etc/passwd", codes.INVALID_IMAGE_URL, "scheme"),
    Refusal(
        "ftp-scheme",
        lambda v: f"ftp://127.0.0.1:{v.images.port}/files/white.png",
        codes.INVALID_IMAGE_URL,
        "scheme",
    ),
    Refusal(
        "private-address-not-allowed",
        lambda v: v.canary.url("/files/white.png"),
        codes.IMAGE_URL_BLOCKED,
        "not a public address",
    ),
    Refusal(
        "cloud-metadata-address",
        lambda v: "http://169.254.169.254/latest/meta-data/",
        codes.IMAGE_URL_BLOCKED,
        "not a public address",
    ),
    Refusal("redirect-to-private", _via_redirect, codes.IMAGE_URL_BLOCKED, "redirected"),
    Refusal("bomb-inline", lambda v: BOMB.data_uri, codes.IMAGE_TOO_LARGE, "too many pixels"),
    Refusal("bomb-fetched", lambda v: v.url(BOMB), codes.IMAGE_TOO_LARGE, "too many pixels"),
    Refusal("bytes-not-an-image", lambda v: v.images.url("/junk"), codes.INVALID_IMAGE, "image"),
    Refusal("html-page", lambda v: v.images.url("/page"), codes.INVALID_IMAGE, "image"),
    Refusal(
        "text-data-uri",
        lambda v: "data:text/plain;base64,aGVsbG8=",
        codes.INVALID_IMAGE,
        "not an image type",
    ),
    Refusal(
        "bad-base64",
        lambda v: "data:image/png;base64,iVBORw0K!!!!",
        codes.INVALID_IMAGE,
        "base64",
    ),
    Refusal(
        "not-found",
        lambda v: v.images.url("/files/missing.png"),
        codes.IMAGE_FETCH_FAILED,
        "HTTP 404",
    ),
    Refusal(
        "timeout",
        lambda v: v.images.url("/slow-headers"),
        codes.IMAGE_FETCH_TIMEOUT,
        f"timed out after {MEDIA_TIMEOUT_S} s",
    ),
]


# -- the seeds' examples --------------------------------------------------------------------------

SEED_HOSTS = ("https://api.surus.dev", "https://inference.nebulablock.com")
SEED_MODELS = ("OpenGVLab/InternVL3-2B", "ChatDOC/OCRFlux-3B", "Qwen/Qwen2.5-VL-7B-Instruct")
# The seeds' image hosts (like model hubs) are unreachable from here: stand-ins on loopback.
SEED_IMAGES = {
    "https://i.imgur.com/IqAOn4t.jpeg": SEED_000_PHOTO,
    "https://qianwen-res.oss-cn-beijing.aliyuncs.com/Qwen-VL/assets/demo.jpeg": SEED_004_PHOTO,
}
SEED_LOCAL_IMAGE = "ruta/a/tu/imagen.jpg"  # seed 000's base64 examples read this file
GUIDED_CHOICES = ("Es un perro.", "Es un gato.")


def seed_replacements(vlm: Vision, local_image: str) -> dict[str, str]:
    """What the seeds' text must change to run here, and nothing more."""
    replacements = {host: vlm.server.url for host in SEED_HOSTS}
    replacements |= {model: MODEL for model in SEED_MODELS}
    replacements |= {url: vlm.url(picture) for url, picture in SEED_IMAGES.items()}
    replacements |= {"tu_clave_api": vlm.key, SEED_LOCAL_IMAGE: local_image}
    return replacements


SEED_000_QUESTIONS = {
    "url": "Qué hay en esta imagen?",
    "base64": "Qué hay en esta imagen?",
    "input-image": "Convert to markdown",
    "guided": "Describe la imagen.",
}


def seed_000_messages(form: str) -> list[dict[str, Any]]:
    """What seed 000's example ``form`` sends (the picture's spelling does not change its
    tokens)."""
    return [user(text(SEED_000_QUESTIONS[form]), image(SEED_000_PHOTO.data_uri))]


def node_usage(output: str) -> int:
    """``usage.prompt_tokens`` from Node's ``console.log`` of a response object."""
    assert "object: 'chat.completion'" in output, output[-2000:]
    found = re.search(r"prompt_tokens: (\d+)", output)
    assert found, output[-2000:]
    return int(found.group(1))


class ServeContract:
    """The suite; its module provides a module-scoped ``vlm`` fixture built with ``serving``."""

    # -- the seeds ----------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def seed_runs(
        cls, vlm: Vision, tmp_path_factory: pytest.TempPathFactory
    ) -> dict[str, SnippetRun | None]:
        local = tmp_path_factory.mktemp("seed") / "imagen.jpg"
        local.write_bytes(SEED_000_PHOTO.data)
        replacements = seed_replacements(vlm, str(local))
        for old in replacements:  # every swap still matches the seeds' text
            assert any(old in code for _, code in SNIPPETS.values()), old
        env = {**os.environ, "NEBULA_API_KEY": vlm.key}
        return run_snippets(SNIPPETS, replacements, env)

    @pytest.fixture(scope="class")
    @classmethod
    def seed(cls, seed_runs: dict[str, SnippetRun | None]) -> Callable[[str], str]:
        def output(name: str) -> str:
            run = seed_runs[name]
            if run is None:
                pytest.skip(f"{SNIPPETS[name][0]} is not installed")
            return run.ok()

        return output

    def seed_answer(self, vlm: Vision, body: dict[str, Any], messages: list[Any]) -> str:
        check_chat(body)
        assert body["model"] == MODEL
        (choice,) = body["choices"]
        assert choice["finish_reason"] in ("stop", "length")
        assert body["usage"]["prompt_tokens"] == expected_tokens(vlm, messages)
        content: str = choice["message"]["content"]
        return content

    @pytest.mark.parametrize("form", ["url", "base64", "input-image"])
    def test_seed_000_python_and_curl(
        self, vlm: Vision, seed: Callable[[str], str], form: str
    ) -> None:
        python = ast.literal_eval(seed(f"000-{form}-python"))  # it prints response.json()
        curl = json.loads(seed(f"000-{form}-curl"))
        for body in (python, curl):
            self.seed_answer(vlm, body, seed_000_messages(form))
            assert body["usage"]["completion_tokens"] <= 50

    @pytest.mark.parametrize("form", ["url", "base64", "input-image"])
    def test_seed_000_javascript(self, vlm: Vision, seed: Callable[[str], str], form: str) -> None:
        printed = node_usage(seed(f"000-{form}-javascript"))
        assert printed == expected_tokens(vlm, seed_000_messages(form))

    def test_seed_000_guided_choice_with_an_image(
        self, vlm: Vision, seed: Callable[[str], str]
    ) -> None:
        python = ast.literal_eval(seed("000-guided-python"))
        curl = json.loads(seed("000-guided-curl"))
        for body in (python, curl):
            assert self.seed_answer(vlm, body, seed_000_messages("guided")) in GUIDED_CHOICES
        printed = node_usage(seed("000-guided-javascript"))
        assert printed == expected_tokens(vlm, seed_000_messages("guided"))

    def test_seed_004_max_tokens_null(self, vlm: Vision, seed: Callable[[str], str]) -> None:
        body = json.loads(seed("004-curl"))
        sent = [user(image(SEED_004_PHOTO.data_uri), text("What is this image?"))]
        self.seed_answer(vlm, body, sent)
        # No budget: the answer may take whatever the context leaves.
        if body["choices"][0]["finish_reason"] == "length":
            assert body["usage"]["total_tokens"] == N_CTX

    # -- what the model card says -----------------------------------------------------------------

    def test_the_model_card_says_vision(self, vlm: Vision) -> None:
        card = vlm.api.http.get(f"/v1/models/{MODEL}").json()
        validate_against("Model", card, allow_extra=MODEL_EXTRAS)
        assert card["capabilities"]["vision"] is True
        assert card["context_length"] == N_CTX

    # -- image tokens in usage ----------------------------------------------------------------

    @pytest.mark.parametrize("picture", [WHITE, SQUARE], ids=lambda p: p.name)
    def test_image_tokens_count_in_usage(self, vlm: Vision, picture: Picture) -> None:
        messages = ask(vlm.url(picture))
        assert prompt_tokens(vlm, messages) == expected_tokens(vlm, messages)

    def test_detail_low_caps_a_large_image(self, vlm: Vision) -> None:
        asks = {d: ask(vlm.url(WIDE), detail=d) for d in ("low", "high", "auto")}
        counts = {d: prompt_tokens(vlm, messages) for d, messages in asks.items()}
        assert counts == {d: expected_tokens(vlm, messages) for d, messages in asks.items()}
        assert counts["low"] < counts["high"] == counts["auto"]

    def test_detail_low_leaves_a_small_image_alone(self, vlm: Vision) -> None:
        url = vlm.url(SQUARE)
        assert prompt_tokens(vlm, ask(url, detail="low")) == prompt_tokens(
            vlm, ask(url, detail="high")
        )

    def test_every_image_form_reads_the_same_picture(self, vlm: Vision) -> None:
        url, inline = vlm.url(WHITE), WHITE.data_uri
        question = text("What is in this picture?")
        forms = {
            "url": image(url),
            "url-string": {"type": "image_url", "image_url": url},
            "data-uri": image(inline),
            "input-image-string": {"type": "input_image", "image_url": inline},
            "input-image-object": {"type": "input_image", "image_url": {"url": url}},
        }
        answers = {name: first_token(vlm, [user(question, part)]) for name, part in forms.items()}
        counts = {name: prompt_tokens(vlm, [user(question, part)]) for name, part in forms.items()}
        assert len(set(counts.values())) == 1, counts
        for name, answer in answers.items():
            assert same_answer(answers["url"], answer), name

    def test_different_pictures_answer_differently(self, vlm: Vision) -> None:
        white, black = ask(vlm.url(WHITE)), ask(vlm.url(BLACK))
        assert prompt_tokens(vlm, white) == prompt_tokens(vlm, black)  # same size
        first, second, again = (
            first_token(vlm, white),
            first_token(vlm, black),
            first_token(vlm, white),
        )
        assert different_answer(first, second)
        assert same_answer(first, again)

    def test_several_images_interleaved_with_text_in_any_order(self, vlm: Vision) -> None:
        a, b = image(vlm.url(WHITE)), image(WIDE.data_uri, detail="low")
        one, two = text("Compare"), text("with this.")
        for message in (
            user(one, a, two, b),
            user(a, b, one, two),
            user(a, one, b, two),
            user(one, two, b, a),
        ):
            assert prompt_tokens(vlm, [message]) == expected_tokens(vlm, [message]), message
        # The model reads images where they are: swapping two changes its answer.
        white, black = image(WHITE.data_uri), image(BLACK.data_uri)
        assert different_answer(
            first_token(vlm, [user(white, black, one, two)]),
            first_token(vlm, [user(black, white, one, two)]),
        )

    def test_images_in_earlier_turns_count(self, vlm: Vision) -> None:
        def conversation(first: Picture) -> list[dict[str, Any]]:
            return [
                user(text("Here is a picture."), image(vlm.url(first))),
                {"role": "assistant", "content": "I see it."},
                user(text("And this one?"), image(SQUARE.data_uri)),
                {"role": "assistant", "content": [{"type": "text", "text": "Also."}]},
                user(text("Which was darker?")),
            ]

        white, black = conversation(WHITE), conversation(BLACK)
        assert prompt_tokens(vlm, white) == expected_tokens(vlm, white)
        # The first turn's image is still read: another picture there changes the answer.
        assert different_answer(first_token(vlm, white), first_token(vlm, black))

    def test_as_many_images_as_allowed(self, vlm: Vision) -> None:
        pictures = [WHITE, BLACK, SQUARE, WHITE]
        assert len(pictures) == MAX_IMAGES
        messages = [user(text("Four."), *(image(p.data_uri) for p in pictures))]
        assert prompt_tokens(vlm, messages) == expected_tokens(vlm, messages)

    # -- streaming, n, constraints, beam search -------------------------------------------------

    def test_streaming_with_images(self, vlm: Vision) -> None:
        messages = [user(text("Describe both."), image(vlm.url(WHITE)), image(SQUARE.data_uri))]
        result = vlm.api.stream_chat(
            messages=messages, max_tokens=6, stream_options={"include_usage": True}
        )
        assert result.usage is not None
        assert result.usage["prompt_tokens"] == expected_tokens(vlm, messages)
        assert result.usage["completion_tokens"] <= 6

    def test_n_2_with_an_image(self, vlm: Vision) -> None:
        messages = ask(vlm.url(SQUARE))
        body = vlm.api.chat(messages=messages, n=2, temperature=1.0, seed=11, max_tokens=6)
        assert [c["index"] for c in body["choices"]] == [0, 1]
        # The prompt, images included, is counted once, not once per choice.
        assert body["usage"]["prompt_tokens"] == prompt_tokens(vlm, messages)
        streamed = vlm.api.stream_chat(
            messages=messages, n=2, temperature=1.0, seed=11, max_tokens=6,
            stream_options={"include_usage": True},
        )  # fmt: skip
        assert streamed.usage is not None
        assert streamed.usage["prompt_tokens"] == body["usage"]["prompt_tokens"]

    def test_guided_choice_with_an_image(self, vlm: Vision) -> None:
        fields: dict[str, Any] = {
            "messages": ask(vlm.url(BLACK), "Describe la imagen."),
            "guided_choice": list(GUIDED_CHOICES),
            "max_tokens": 20,
            "top_k": 10,
        }
        whole = vlm.api.chat(**fields)["choices"][0]["message"]["content"]
        streamed = vlm.api.stream_chat(**fields).texts()[0]
        assert whole in GUIDED_CHOICES
        assert streamed in GUIDED_CHOICES

    def test_beam_search_with_an_image_follows_the_capability(self, vlm: Vision) -> None:
        card = vlm.api.http.get(f"/v1/models/{MODEL}").json()
        messages = ask(vlm.url(WHITE))
        body: dict[str, Any] = {"messages": messages, "use_beam_search": True, "n": 2}
        if not card["capabilities"]["beam_search"]:
            assert refused(vlm, body)["param"] == "use_beam_search"
            return
        answer = vlm.api.chat(**body, max_tokens=4)
        assert len(answer["choices"]) == 2
        assert answer["usage"]["prompt_tokens"] == prompt_tokens(vlm, messages)

    def test_the_openai_sdk_sends_images(self, vlm: Vision) -> None:
        client = vlm.sdk()
        messages: Any = ask(vlm.url(WIDE), detail="low")
        expected = expected_tokens(vlm, messages)
        response = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
        assert response.usage is not None and response.usage.prompt_tokens == expected
        assert response.choices[0].message.role == "assistant"
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=messages,
                max_tokens=4,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == expected
        assert chunks[0].choices[0].delta.role == "assistant"

    # -- refusals -----------------------------------------------------------------------------

    @pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.name)
    def test_an_unusable_image_is_a_400_naming_the_part(self, vlm: Vision, case: Refusal) -> None:
        message = refused_part(vlm, ask(case.url(vlm)), case.code)
        assert case.says in message, message
        assert vlm.canary.connections == 0, "the canary was reached"

    def test_the_redirect_was_followed_up_to_the_blocked_hop(self, vlm: Vision) -> None:
        before = vlm.images.paths.count("/to")
        refused_part(vlm, ask(_via_redirect(vlm)), codes.IMAGE_URL_BLOCKED)
        assert vlm.images.paths.count("/to") == before + 1  # the first hop was fetched ...
        assert vlm.canary.connections == 0  # ... the second never connected

    def test_a_refused_image_fails_a_stream_before_it_starts(self, vlm: Vision) -> None:
        body = {"messages": ask(vlm.images.url("/files/missing.png")), "stream": True}
        error = refused(vlm, body)
        assert (error["code"], error["param"]) == (codes.IMAGE_FETCH_FAILED, PART)

    def test_a_bad_image_in_a_later_turn_is_named(self, vlm: Vision) -> None:
        messages = [
            user(text("fine"), image(WHITE.data_uri)),
            {"role": "assistant", "content": "ok"},
            user(text("and"), image(SQUARE.data_uri), image(vlm.images.url("/junk"))),
        ]
        refused_part(vlm, messages, codes.INVALID_IMAGE, "messages[2].content[2].image_url")

    def test_more_images_than_allowed_across_turns(self, vlm: Vision) -> None:
        messages = [
            user(text("two"), image(WHITE.data_uri), image(BLACK.data_uri)),
            {"role": "assistant", "content": "ok"},
            user(text("three"), *(image(SQUARE.data_uri) for _ in range(MAX_IMAGES - 1))),
        ]
        error = refused(vlm, {"messages": messages})
        assert (error["code"], error["param"]) == (codes.TOO_MANY_IMAGES, "messages")
        assert f"{MAX_IMAGES + 1} images" in error["message"]
        assert f"at most {MAX_IMAGES}" in error["message"]

    def test_an_image_in_an_assistant_turn_is_refused(self, vlm: Vision) -> None:
        messages = [
            user(text("hi")),
            {"role": "assistant", "content": [image(WHITE.data_uri)]},
            user(text("and?")),
        ]
        error = refused(vlm, {"messages": messages})
        assert error["param"].startswith("messages[1].content"), error
        assert "image_url" in error["message"] or "'text'" in error["message"], error

    @pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
    def test_an_image_larger_than_the_context_is_a_400(self, vlm: Vision, stream: bool) -> None:
        body = {"messages": ask(vlm.url(TALL)), "stream": stream}
        assert TALL.tokens() > N_CTX
        error = refused(vlm, body)
        assert (error["code"], error["param"]) == ("context_length_exceeded", "messages"), error
        # The same picture at low detail fits.
        assert prompt_tokens(vlm, ask(vlm.url(TALL), detail="low")) < N_CTX

    @pytest.mark.parametrize(
        ("field", "value"), [("prompt_logprobs", 1), ("truncate_prompt_tokens", 50)]
    )
    def test_prompt_token_options_with_images_are_refused(
        self, vlm: Vision, field: str, value: int
    ) -> None:
        error = refused(vlm, {"messages": ask(WHITE.data_uri), field: value})
        assert (error["code"], error["param"]) == ("unsupported_parameter", field), error
