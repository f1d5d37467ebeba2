"""The incremental JSON scanner under tool-call arguments: ends, safe prefixes, healing."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from pampero.parsers.jsonscan import JsonScanner


def scan(text: str, chunk: int = 0) -> tuple[str, int, JsonScanner]:
    """Feed ``text`` (in pieces of ``chunk`` characters, or whole), finish; the output, where
    the value ended in ``text``, and the scanner."""
    scanner = JsonScanner()
    out = []
    pos = 0
    if chunk:
        for start in range(0, len(text), chunk):
            piece = text[start : start + chunk]
            stop = scanner.feed(piece)
            out.append(scanner.take())
            pos = start + stop
            if scanner.ended:
                break
    else:
        pos = scanner.feed(text)
        out.append(scanner.take())
    scanner.finish()
    out.append(scanner.take())
    return "".join(out), pos, scanner


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(["obj", "arr", "str", "num", "lit"] if depth < 4 else ["str", "num", "lit"])
    if kind == "obj":
        return {
            rng.choice("abcxyz") + str(i): random_value(rng, depth + 1)
            for i in range(rng.randint(0, 4))
        }
    if kind == "arr":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "str":
        return "".join(rng.choice('ab "\\/\n\t{}[]:,é東👋\u2028') for _ in range(rng.randint(0, 8)))
    if kind == "num":
        return rng.choice([0, -1, 12, 3.25, -0.5, 1e21, 2.5e-7, 10**20])
    return rng.choice([True, False, None])


def documents(count: int) -> list[str]:
    rng = random.Random(7)
    docs = []
    for _ in range(count):
        value = {"k": random_value(rng)}
        indent = rng.choice([None, 0, 2])
        docs.append(json.dumps(value, indent=indent, ensure_ascii=rng.random() < 0.5))
    return docs


@pytest.mark.parametrize("doc", documents(60))
def test_valid_json_passes_through_exactly_and_ends_at_its_end(doc: str) -> None:
    for chunk in (0, 1, 3):
        out, end, scanner = scan(doc + "}</tool_call>", chunk)
        assert out == doc
        assert end == len(doc)
        assert scanner.done


@pytest.mark.parametrize("doc", documents(25))
def test_every_prefix_closes_into_json_that_starts_the_same(doc: str) -> None:
    for cut in range(1, len(doc)):
        out, _, _ = scan(doc[:cut])
        value = json.loads(out)
        assert isinstance(value, dict)
        # What was handed out is a prefix of the document, before the closing characters.
        handed = JsonScanner()
        handed.feed(doc[:cut])
        assert doc.startswith(handed.take())


def test_output_is_held_back_only_where_it_must_be() -> None:
    scanner = JsonScanner()
    scanner.feed('{"city": "Par')
    assert scanner.take() == '{"city": "Par'
    scanner.feed('is", "n')
    assert scanner.take() == 'is"'  # the comma and the next key wait for their value
    scanner.feed('": 12')
    assert scanner.take() == ', "n": 12'
    scanner.feed("3")
    assert scanner.take() == "3"
    scanner.feed(', "ok": tr')
    assert scanner.take() == ""  # a literal is handed out whole
    assert scanner.feed("ue} trailing") == 3
    assert scanner.take() == ', "ok": true}'


@pytest.mark.parametrize(
    ("text", "closed"),
    [
        ('{"a": "x', '{"a": "x"}'),
        ('{"a": "x\\', '{"a": "x"}'),
        ('{"a": "\\u00e', '{"a": ""}'),
        ('{"a": [1, {"b": ', '{"a": [1, {}]}'),
        ('{"a": 1.', '{"a": 1}'),
        ('{"a": -', "{}"),
        ('{"a": nu', "{}"),
        ('{"a": 1, ', '{"a": 1}'),
        ('{"a": 1, "b', '{"a": 1}'),
        ("{", "{}"),
    ],
)
def test_a_cut_off_value_is_closed(text: str, closed: str) -> None:
    out, _, _ = scan(text)
    assert out == closed


@pytest.mark.parametrize(
    ("text", "closed", "stop"),
    [
        ('{"a": 1 "b": 2}', '{"a": 1}', 8),
        ('{"a": tru}', "{}", 9),
        ("{'a': 1}", "{}", 1),
        ('{"a": [1 2]}', '{"a": [1]}', 9),
        ('{"a": 01}', '{"a": 0}', 7),
    ],
)
def test_broken_syntax_stops_at_the_offending_character(text: str, closed: str, stop: int) -> None:
    scanner = JsonScanner()
    assert scanner.feed(text) == stop
    assert scanner.failed
    handed = scanner.take()
    scanner.finish()
    assert handed + scanner.take() == closed


@pytest.mark.parametrize(
    ("text", "repaired"),
    [
        ('{"s": "a\nb\tc\rd\x01"}', '{"s": "a\\nb\\tc\\rd\\u0001"}'),
        ('{"re": "\\d+\\.\\w"}', '{"re": "\\\\d+\\\\.\\\\w"}'),
        ('{"q": "it\\\'s"}', '{"q": "it\'s"}'),
        ('{"u": "\\uZZ"}', '{"u": "\\\\uZZ"}'),
        ('{"t": True, "f": False, "n": None}', '{"t": true, "f": false, "n": null}'),
        ('{"a": [1, 2,], "b": 3,}', '{"a": [1, 2], "b": 3}'),
    ],
)
def test_common_slips_are_repaired_into_json(text: str, repaired: str) -> None:
    for chunk in (0, 1):
        out, end, scanner = scan(text, chunk)
        assert out == repaired
        assert end == len(text) and scanner.done
        json.loads(out)


def test_scalars_end_where_the_next_token_starts() -> None:
    scanner = JsonScanner()
    assert scanner.feed('"na\\"me", ') == 8
    assert json.loads(scanner.take()) == 'na"me'
    number = JsonScanner()
    assert number.feed("-12.5e3}") == 7 and number.done
    assert number.take() == "-12.5e3"
    pending = JsonScanner()
    pending.feed("42")
    assert not pending.done  # it may go on: 420
    pending.finish()
    assert pending.done and pending.take() == "42"


def test_leading_blanks_are_not_part_of_the_value() -> None:
    out, _, scanner = scan('  \n {"a": 1}')
    assert out == '{"a": 1}' and scanner.first == "{"


def test_nothing_to_close_when_nothing_began() -> None:
    scanner = JsonScanner()
    scanner.feed("   ")
    scanner.finish()
    assert scanner.take() == "" and not scanner.started


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ('{"city": "Par', '{"city": "Par'),
        ('{"city": "Paris", "un', '{"city": "Paris", "un'),
        ('{"a": [1, 2', '{"a": [1, 2'),
        ('{"a": 1.', '{"a": 1.'),
        ('{"a": tr', '{"a": tr'),
        ('{"q": "a\\', '{"q": "a\\'),
        ('{"q": "a\\u00', '{"q": "a\\u00'),
        ('{"a": 1, ', '{"a": 1, '),
        ("", ""),
    ],
)
def test_cut_hands_out_what_was_written_unclosed(text: str, written: str) -> None:
    """``max_tokens`` ended the value: the text so far, as written, never closed."""
    for chunk in (0, 1, 3):
        scanner = JsonScanner()
        out = []
        if chunk:
            for start in range(0, len(text), chunk):
                scanner.feed(text[start : start + chunk])
                out.append(scanner.take())
        else:
            scanner.feed(text)
            out.append(scanner.take())
        scanner.cut()
        out.append(scanner.take())
        assert "".join(out) == written
