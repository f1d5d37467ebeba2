"""The llama.cpp tokenizer and batch runner on the real default model (Qwen2.5-Coder-0.5B)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import llama_cpp as L
import numpy as np
import numpy.typing as npt
import pytest

from pampero.assets import ensure_default_model
from pampero.engines.llamacpp.runner import LlamaRunner, RunnerConfig
from pampero.engines.llamacpp.tokenizer import LlamaTokenizer
from pampero.errors import EngineError
from pampero.settings import default_home

IM_START, IM_END, ENDOFTEXT = 151644, 151645, 151643


@pytest.fixture(scope="module")
def runner() -> Iterator[LlamaRunner]:
    home = Path(os.environ["PAMPERO_HOME"]) if os.environ.get("PAMPERO_HOME") else default_home()
    path = ensure_default_model(home, progress=lambda done, total: None)
    # One thread: llama.cpp's spinning workers slow to a crawl when other jobs share the CPUs.
    loaded = LlamaRunner(
        RunnerConfig(path=path, n_ctx_seq=128, max_seqs=2, n_batch=32, threads=1, threads_batch=1)
    )
    yield loaded
    loaded.close()


@pytest.fixture
def tok(runner: LlamaRunner) -> LlamaTokenizer:
    return runner.tokenizer


@pytest.fixture
def clean(runner: LlamaRunner) -> LlamaRunner:
    for seq in range(2):
        runner.seq_remove(seq)
    return runner


# -- tokenizer ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["hello world", "def f(x):\n    return x * 2\n", "Grüße 世界 😀 €", " leading", ""]
)
def test_encode_decode_round_trip(tok: LlamaTokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert b"".join(tok.token_bytes(t) for t in ids) == text.encode()


def test_control_tokens_are_parsed_only_when_asked(tok: LlamaTokenizer) -> None:
    text = "<|im_start|>user\nhi<|im_end|>"
    parsed = tok.encode(text, parse_special=True)
    assert parsed[0] == IM_START and parsed[-1] == IM_END
    plain = tok.encode(text, parse_special=False)
    assert IM_START not in plain and IM_END not in plain
    assert tok.decode(plain) == text  # plain text survives skip_special
    assert tok.decode(parsed) == "user\nhi"
    assert tok.decode(parsed, skip_special=False) == text


def test_qwen_adds_no_bos(tok: LlamaTokenizer) -> None:
    assert tok.encode("hi", add_special=True) == tok.encode("hi")


def test_the_pieces_table(tok: LlamaTokenizer) -> None:
    assert len(tok.pieces) == tok.vocab_size == 151936
    assert tok.pieces[IM_END] == b"<|im_end|>"
    assert tok.pieces[tok.encode("hello")[0]] == b"hello"
    assert {"<|im_start|>", "<|im_end|>", "<|endoftext|>"} <= tok.special_texts()
    assert tok.is_special(IM_START) and not tok.is_special(tok.encode("hello")[0])


def test_end_of_generation_and_fill_in_the_middle_ids(tok: LlamaTokenizer) -> None:
    assert {IM_END, ENDOFTEXT} <= tok.eog_token_ids
    assert tok.eos_text == "<|im_end|>"
    assert tok.fim_token_ids is not None
    assert [tok.pieces[t] for t in tok.fim_token_ids] == [
        b"<|fim_prefix|>",
        b"<|fim_suffix|>",
        b"<|fim_middle|>",
    ]


# -- runner -------------------------------------------------------------------------------------


def decode(runner: LlamaRunner, rows: list[tuple[int, int, int, bool]]) -> npt.NDArray[np.float32]:
    """Decode (token, position, seq, wants_logits) rows; return a copy of the logits."""
    t, p, s, w = zip(*rows, strict=True)
    return runner.decode(
        np.asarray(t, np.int32),
        np.asarray(p, np.int32),
        np.asarray(s, np.int32),
        np.asarray(w, np.int8),
    ).copy()


def prompt_rows(
    ids: list[int], seq: int, *, all_logits: bool = False
) -> list[tuple[int, int, int, bool]]:
    return [(t, i, seq, all_logits or i == len(ids) - 1) for i, t in enumerate(ids)]


def test_the_runner_reports_its_geometry(runner: LlamaRunner) -> None:
    assert (runner.n_vocab, runner.n_ctx_seq, runner.n_batch) == (151936, 128, 32)
    assert runner.chat_template is not None and "<|im_start|>" in runner.chat_template


def test_decode_returns_one_row_per_requested_logit(clean: LlamaRunner) -> None:
    ids = clean.tokenizer.encode("The capital of France is")
    last_only = decode(clean, prompt_rows(ids, 0))
    assert last_only.shape == (1, clean.n_vocab) and last_only.dtype == np.float32
    clean.seq_remove(0)
    every = decode(clean, prompt_rows(ids, 0, all_logits=True))
    assert every.shape == (len(ids), clean.n_vocab)
    np.testing.assert_allclose(every[-1], last_only[0], atol=1e-3)


def test_the_logits_are_a_view_of_llama_cpps_own_buffer_whatever_its_size(
    clean: LlamaRunner,
) -> None:
    # The runner keeps one numpy view per buffer address and row count; the view must always
    # be the buffer llama.cpp just wrote, also once it has grown (more rows than ever before).
    ids = clean.tokenizer.encode("one two three four five six seven eight nine ten eleven")
    for n_rows in (1, 3, 1, len(ids), 2):
        clean.seq_remove(0)
        rows = [(t, i, 0, i >= len(ids) - n_rows) for i, t in enumerate(ids)]
        t, p, s, w = (np.asarray(c, dtype) for c, dtype in zip(zip(*rows, strict=True),
                      (np.int32, np.int32, np.int32, np.int8), strict=True))  # fmt: skip
        got = clean.decode(t, p, s, w)
        own = np.ctypeslib.as_array(L.llama_get_logits(clean._ctx), shape=(n_rows, clean.n_vocab))
        assert got.shape == (n_rows, clean.n_vocab)
        assert got.ctypes.data == own.ctypes.data and np.array_equal(got, own)


def test_batched_sequences_decode_like_sequences_alone(clean: LlamaRunner) -> None:
    a = clean.tokenizer.encode("def add(a, b):\n    return")
    b = clean.tokenizer.encode("The opposite of hot is")
    alone_a = int(np.argmax(decode(clean, prompt_rows(a, 0))[0]))
    alone_b = int(np.argmax(decode(clean, prompt_rows(b, 1))[0]))
    next_a = int(np.argmax(decode(clean, [(alone_a, len(a), 0, True)])[0]))
    next_b = int(np.argmax(decode(clean, [(alone_b, len(b), 1, True)])[0]))
    clean.seq_remove(0)
    clean.seq_remove(1)
    together = decode(clean, prompt_rows(a, 0) + prompt_rows(b, 1))
    assert [int(x) for x in np.argmax(together, axis=1)] == [alone_a, alone_b]
    step = decode(clean, [(alone_a, len(a), 0, True), (alone_b, len(b), 1, True)])
    assert [int(x) for x in np.argmax(step, axis=1)] == [next_a, next_b]


def test_a_copied_prefix_continues_like_the_original(clean: LlamaRunner) -> None:
    ids = clean.tokenizer.encode("Once upon a time, there was a")
    decode(clean, prompt_rows(ids[:-1], 0))
    clean.seq_copy(0, 1, len(ids) - 1)
    original = decode(clean, [(ids[-1], len(ids) - 1, 0, True)])[0]
    copied = decode(clean, [(ids[-1], len(ids) - 1, 1, True)])[0]
    assert int(np.argmax(copied)) == int(np.argmax(original))
    np.testing.assert_allclose(copied, original, atol=1e-2)


def test_a_trimmed_sequence_is_decoded_again_from_the_cut(clean: LlamaRunner) -> None:
    ids = clean.tokenizer.encode("one two three four five")
    first = decode(clean, prompt_rows(ids, 0))[0]
    clean.seq_remove(0, 2, -1)
    again = decode(clean, prompt_rows(ids, 0)[2:])[0]
    assert int(np.argmax(again)) == int(np.argmax(first))


def test_batches_that_do_not_fit_are_refused(clean: LlamaRunner) -> None:
    with pytest.raises(EngineError):
        decode(clean, [(1, i, 0, False) for i in range(33)])
    with pytest.raises(EngineError):
        clean.decode(*(np.empty(0, np.int32),) * 3, np.empty(0, np.int8))


def test_a_batch_with_a_bad_token_fails_whole_and_the_others_decode_again(
    clean: LlamaRunner,
) -> None:
    # What the scheduler's isolation relies on: one bad row fails llama_decode for the whole
    # batch, and after removing the batch's positions a good sequence continues exactly.
    ids = clean.tokenizer.encode("def add(a, b):\n    return")
    decode(clean, prompt_rows(ids[:-1], 0))
    reference = decode(clean, [(ids[-1], len(ids) - 1, 0, True)])[0]  # the same batch shapes
    clean.seq_remove(0)
    decode(clean, prompt_rows(ids[:-1], 0))
    with pytest.raises(EngineError):
        decode(clean, [(ids[-1], len(ids) - 1, 0, True), (clean.n_vocab + 7, 0, 1, True)])
    clean.seq_remove(0, len(ids) - 1, -1)
    clean.seq_remove(1)
    again = decode(clean, [(ids[-1], len(ids) - 1, 0, True)])[0]
    assert int(np.argmax(again)) == int(np.argmax(reference))
    np.testing.assert_allclose(again, reference, atol=1e-3)
