"""``TextAssembler``: incremental UTF-8, stop strings at any split, special-token spacing.

Each token id here indexes the ``pieces`` list it is given, so a test chooses the exact byte
splits a tokenizer would produce.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pampero.sampling.text import TextAssembler
from tests.fakes import ByteTokenizer

TEXT = "Grüße, 世界! The answer is 42 — see ‘STOP’ 😀 and then STOP here; more après"


def stream(
    pieces: list[bytes], specials: frozenset[int] = frozenset(), **options: Any
) -> tuple[list[str], str, str | None]:
    """Feed every piece as the scheduler does; return the deltas, the final text, the stop."""
    text = TextAssembler(pieces, specials, **options)
    deltas: list[str] = []
    found = None
    for token in range(len(pieces)):
        before = len(text.text)
        text.add(token)
        found = text.find_stop(before)
        deltas.append(text.take(False))
        if found is not None:
            break
    deltas.append(text.take(True))
    return deltas, text.text, found


def split(data: bytes, rng: random.Random, longest: int = 5) -> list[bytes]:
    pieces, i = [], 0
    while i < len(data):
        n = rng.randint(1, longest)
        pieces.append(data[i : i + n])
        i += n
    return pieces


def reference(text: str, stop: str, include: bool) -> str:
    at = text.find(stop)
    if at < 0:
        return text
    return text[: at + len(stop)] if include else text[:at]


def test_a_character_split_across_tokens_comes_out_whole() -> None:
    data = TEXT.encode()
    deltas, final, _ = stream([data[i : i + 1] for i in range(len(data))])
    assert "".join(deltas) == final == TEXT
    assert not any("\ufffd" in d for d in deltas)


@pytest.mark.parametrize("stop", ["STOP", "世界", "😀 a", "42 — s", "é", "not there"])
@pytest.mark.parametrize("include", [False, True])
def test_stop_strings_are_found_at_any_split(stop: str, include: bool) -> None:
    rng = random.Random(stop)
    expected = reference(TEXT, stop, include)
    for _ in range(60):
        deltas, final, found = stream(split(TEXT.encode(), rng), stop=[stop], include_stop=include)
        assert final == expected
        assert "".join(deltas) == final  # nothing streamed was taken back
        assert found == (stop if stop in TEXT else None)


@pytest.mark.parametrize("seed", range(40))
def test_streamed_text_is_the_final_text_for_any_stops_and_split(seed: int) -> None:
    rng = random.Random(seed)
    stops = [TEXT[i : i + rng.randint(1, 6)] for i in rng.sample(range(len(TEXT) - 6), 3)]
    stops.append("never")
    deltas, final, found = stream(split(TEXT.encode(), rng, longest=8), stop=stops)
    assert "".join(deltas) == final
    assert found is not None and found in stops
    assert all(s not in final for s in stops)


def test_a_stop_string_spanning_several_tokens_is_never_partly_streamed() -> None:
    deltas, final, found = stream([b"abc S", b"T", b"O", b"P", b" tail"], stop=["STOP"])
    assert deltas == ["abc ", "", "", "", ""]
    assert (final, found) == ("abc ", "STOP")


def test_a_held_back_tail_is_released_once_it_cannot_be_a_stop() -> None:
    deltas, final, found = stream([b"go ST", b"ART", b"!"], stop=["STOP"])
    assert deltas == ["go ", "START", "!", ""]
    assert (final, found) == ("go START!", None)


def test_the_first_occurrence_wins_inside_one_token() -> None:
    _, final, found = stream([b"he", b"llo wo", b"rld"], stop=["o", "wor"])
    assert (final, found) == ("hell", "o")


def test_bytes_pending_after_a_stop_string_do_not_leak() -> None:
    # "P" ends the text; the token also began a multi-byte character that never completed.
    deltas, final, found = stream([b"ab", b"P\xe2", b"\x82\xac"], stop=["P"])
    assert (final, found) == ("ab", "P")
    assert "".join(deltas) == "ab"


def test_an_unfinished_character_at_the_end_is_replaced() -> None:
    deltas, final, _ = stream([b"ok", "€".encode()[:2]])
    assert final == "ok\ufffd" and "".join(deltas) == final


def test_empty_stop_strings_are_ignored() -> None:
    deltas, final, found = stream([b"abc"], stop=[""])
    assert (final, found, deltas) == ("abc", None, ["abc", ""])


TOKENIZER = ByteTokenizer()
PIECES = [TOKENIZER.token_bytes(i) for i in range(TOKENIZER.vocab_size)]
SPECIALS = frozenset(range(256, TOKENIZER.vocab_size))
EOT, START = TOKENIZER.ids["<|endoftext|>"], TOKENIZER.ids["<|im_start|>"]


def assemble(ids: list[int], **options: Any) -> str:
    text = TextAssembler(PIECES, SPECIALS, **options)
    for token in ids:
        text.add(token)
    return text.take(True)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "AB"),
        ({"skip_special": False}, "A <|im_start|> <|endoftext|> B"),
        ({"skip_special": False, "spaces_between_special": False}, "A<|im_start|><|endoftext|>B"),
    ],
)
def test_special_tokens_are_skipped_or_spaced(options: dict[str, Any], expected: str) -> None:
    assert assemble([ord("A"), START, EOT, ord("B")], **options) == expected


def test_a_special_token_at_the_start_gets_no_leading_space() -> None:
    assert assemble([START, ord("x")], skip_special=False) == "<|im_start|> x"


def test_a_split_character_after_a_special_token_is_still_spaced() -> None:
    ids = [START, *"€".encode(), START]
    assert assemble(ids, skip_special=False) == "<|im_start|> € <|im_start|>"
