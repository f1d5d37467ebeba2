"""Every code example of the docs site's guide pages, run as written against a real server.

``tests/docs_blocks.py`` finds the examples (Python, JavaScript, curl) and says which pages are
run here. A page's Python blocks run as one program, in order (later blocks use the client the
first one made, as a reader would in one session); each curl and JavaScript block runs alone.
Only the address changes, ``http://127.0.0.1:8000`` to the test server's. The server has no key
(the guides show both keyed and keyless calls; a keyless server accepts both) and the default
context: every example either sets ``max_tokens`` (``max_output_tokens``) or is bound by a
constraint that ends it (a choice, a schema).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.docs_blocks import EXAMPLES_RUN_BY, RUN_HERE, examples
from tests.e2e.harness import Server, SnippetRun, run_snippets

pytestmark = pytest.mark.e2e

PAGES = sorted(page for page, runner in EXAMPLES_RUN_BY.items() if runner == RUN_HERE)
ADDRESS = "http://127.0.0.1:8000"


def snippets() -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for page in PAGES:
        blocks = examples(page)
        python = [b.code for b in blocks if b.runner == "python"]
        if python:
            found[f"{page}:python"] = ("python", "\n".join(python))
        for i, block in enumerate(b for b in blocks if b.runner != "python"):
            found[f"{page}:{block.runner}:{i}"] = (str(block.runner), block.code)
    return found


SNIPPETS = snippets()


@pytest.fixture(scope="module")
def runs(server: Server) -> dict[str, SnippetRun | None]:
    """The examples' answers from the session's default server (``tests/conftest.py``)."""
    for _, code in SNIPPETS.values():
        assert ADDRESS in code  # every example talks to the documented address
    return run_snippets(SNIPPETS, {ADDRESS: server.url}, dict(os.environ))


@pytest.mark.parametrize("name", list(SNIPPETS))
def test_the_example_runs(runs: dict[str, SnippetRun | None], name: str) -> None:
    run = runs[name]
    if run is None:
        pytest.skip(f"{SNIPPETS[name][0]} is not installed")
    output = run.ok()
    assert output.strip(), f"{name} printed nothing"
    kind = SNIPPETS[name][0]
    if kind == "curl":
        body = json.loads(output)
        assert body["choices"][0]["message"]["content"], body
        assert body["object"] == "chat.completion"


def test_the_quick_start_prints_what_it_says(runs: dict[str, SnippetRun | None]) -> None:
    python = runs["index.md:python"]
    assert python is not None
    lines = python.ok()
    assert " tokens in, " in lines  # the streamed usage
    assert lines.rstrip().splitlines()[-1] in ("positiva", "negativa")  # guided_choice


def test_the_structured_outputs_guide_parses_a_persona(runs: dict[str, SnippetRun | None]) -> None:
    run = runs["structured-outputs.md:python"]
    assert run is not None
    printed = run.ok().strip()  # pydantic's repr: nombre='...' edad=...
    assert printed.startswith("nombre=") and " edad=" in printed
    curl = runs["structured-outputs.md:curl:0"]
    assert curl is not None
    answer = json.loads(curl.ok())["choices"][0]["message"]["content"]
    assert answer in ("Es un perro.", "Es un gato.")


def test_the_responses_guide_answers_in_json(runs: dict[str, SnippetRun | None]) -> None:
    run = runs["responses.md:python"]
    assert run is not None
    output = run.ok()
    person = next((o for o in json_objects(output) if "nombre" in o), None)
    assert person is not None, output
    assert set(person) == {"nombre", "edad"}
    assert isinstance(person["edad"], int)


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every JSON object printed in ``text`` (the model may spread one over several lines)."""
    decoder = json.JSONDecoder()
    for start in (i for i, c in enumerate(text) if c == "{"):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value
