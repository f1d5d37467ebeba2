"""The contract every output parser keeps, run over every registered parser and their pairings.

Modelled on vLLM's ``tests/tool_parsers/common_tests.py``, for every realistic output below:

1. split-invariance: however the text is chunked (one piece, single characters, every two-piece
   split, random chunkings, splits inside tags), the folded deltas are the one-shot result, and
   the one-shot result is the expected message;
2. a call's first delta carries its index, id and name; later ones argument fragments only,
   in index order;
3. the concatenated fragments are the call's arguments, a JSON object, or for a call cut off
   by the end of the output, the text written so far (a prefix of one, never completed);
4. no markup in content or reasoning, unless the case is one whose markup is not a call;
5. ids are ``call_`` and 24 random alphanumerics, distinct;
6. streaming is incremental: held-back text stays bounded;
7. all of this also holds for the outputs cut off anywhere (``max_tokens``) and for randomly
   damaged ones, where there is no expected message, only the invariants.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pampero.parsers import (
    OutputParser,
    ParsedDelta,
    ParsedMessage,
    available_reasoning_parsers,
    available_tool_parsers,
    create_output_parser,
    fold,
    parse_all,
    reasoning_parser,
    tool_parser,
)
from pampero.parsers.base import IdFactory, ToolParser, new_call_id
from pampero.parsers.jsonscan import JsonScanner

MARKUP = (
    "<tool_call>",
    "</tool_call>",
    "<|python_tag|>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "[CALL_ID]",
    "<think>",
    "</think>",
)
ID = re.compile(r"call_[A-Za-z0-9]{24}")
Calls = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Case:
    label: str
    text: str
    content: str = ""
    calls: Calls = ()
    reasoning: str = ""
    markup_in_text: bool = False  # the case's markup is not a call: it stays, verbatim
    streams_arguments: bool = True  # False where arguments can only go out once complete

    def expected(self) -> tuple[str, str, Calls]:
        return self.content, self.reasoning, self.calls


def plain(label: str, text: str) -> Case:
    return Case(label, text, content=text)


# Every parser, whatever its format, passes plain text through untouched.
GENERIC = [
    plain("plain", "The capital of France is Paris."),
    plain("plain-blanks", "\n\nFirst line.\n\n  Second line, indented.\n"),
    plain("plain-unicode", "Zürich, 東京, café — 👋🏽 done."),
    plain("plain-code", 'def f(x):\n    return {"a": [x, "}"]}  # not a call\n'),
    Case("empty", ""),
]

W = '{"city": "Paris", "unit": "celsius"}'
NESTED = (
    '{"query": "say \\"hi\\"\\n", "filters": {"tags": ["a", "b"], '
    '"range": {"min": -1.5e2, "max": null}}, "ok": true, "braces": "} { ] [ }}"}'
)
UNICODE = '{"city": "Zürich", "greeting": "こんにちは 👋", "escaped": "caf\\u00e9"}'
LENIENT_RAW = '{"pattern": "\\d+", "text": "line 1\nline 2\tend", "flag": True, "none": None,}'
LENIENT = '{"pattern": "\\\\d+", "text": "line 1\\nline 2\\tend", "flag": true, "none": null}'


def tc(name: str, arguments: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


def bare(name: str, arguments: str) -> str:
    return f'{{"name": "{name}", "arguments": {arguments}}}'


HERMES = [
    Case("one-call", tc("get_weather", W), calls=(("get_weather", W),)),
    Case(
        "parallel",
        tc("get_weather", W) + "\n" + tc("get_time", '{"tz": "Europe/Paris"}'),
        calls=(("get_weather", W), ("get_time", '{"tz": "Europe/Paris"}')),
    ),
    Case(
        "text-then-call",
        "Let me check the weather.\n" + tc("get_weather", W),
        content="Let me check the weather.",
        calls=(("get_weather", W),),
    ),
    Case(
        "text-call-text",
        "Checking.\n" + tc("get_weather", W) + "\nI asked for Paris.\n",
        content="Checking.\nI asked for Paris.",
        calls=(("get_weather", W),),
    ),
    Case("nested-escaped", tc("search", NESTED), calls=(("search", NESTED),)),
    Case("unicode", tc("get_weather", UNICODE), calls=(("get_weather", UNICODE),)),
    Case(
        "arguments-first",
        '<tool_call>\n{"arguments": {"a": 1}, "name": "f"}\n</tool_call>',
        calls=(("f", '{"a": 1}'),),
        streams_arguments=False,
    ),
    Case(
        "arguments-as-string",
        '<tool_call>\n{"name": "f", "arguments": "{\\"a\\": [1, 2]}"}\n</tool_call>',
        calls=(("f", '{"a": [1, 2]}'),),
        streams_arguments=False,
    ),
    Case(
        "no-arguments",
        '<tool_call>\n{"name": "get_time"}\n</tool_call>',
        calls=(("get_time", "{}"),),
    ),
    Case(
        "null-arguments",
        '<tool_call>\n{"name": "get_time", "arguments": null}\n</tool_call>',
        calls=(("get_time", "{}"),),
    ),
    Case(
        "parameters-key",
        '<tool_call>{"name": "f", "parameters": {"x": 1}}</tool_call>',
        calls=(("f", '{"x": 1}'),),
    ),
    Case("lenient-json", tc("f", LENIENT_RAW), calls=(("f", LENIENT),)),
    Case(
        "extra-brace",
        '<tool_call>\n{"name": "f", "arguments": {"a": 1}}}\n</tool_call>',
        calls=(("f", '{"a": 1}'),),
    ),
    Case(
        "missing-end-tag",
        '<tool_call>\n{"name": "a", "arguments": {}}\n<tool_call>\n{"name": "b", "arguments": {}}',
        calls=(("a", "{}"), ("b", "{}")),
    ),
    Case(
        "broken-arguments",
        '<tool_call>\n{"name": "f", "arguments": {"a": 1, "b": }}\n</tool_call>\nDone.',
        content="\nDone.",
        calls=(("f", '{"a": 1}'),),
    ),
    Case(
        "unterminated-call",
        'On it.\n<tool_call>\n{"name": "f", "arguments": {"city": "Par',
        content="On it.",
        calls=(("f", '{"city": "Par'),),
    ),
    Case(
        "unterminated-in-escape",
        '<tool_call>\n{"name": "f", "arguments": {"q": "a\\u00',
        calls=(("f", '{"q": "a\\u00'),),
    ),
    Case(
        "not-json",
        '<tool_call>\nget_weather(city="Paris")\n</tool_call>',
        content='<tool_call>\nget_weather(city="Paris")\n</tool_call>',
        markup_in_text=True,
    ),
    Case(
        "json-without-name",
        'Result: <tool_call>{"city": "Paris"}</tool_call>',
        content='Result: <tool_call>{"city": "Paris"}</tool_call>',
        markup_in_text=True,
    ),
    Case(
        "tag-in-prose",
        "Wrap calls in a <tool_call> tag, then stop.",
        content="Wrap calls in a <tool_call> tag, then stop.",
        markup_in_text=True,
    ),
    Case(
        "cut-before-name",
        'Sure <tool_call>\n{"na',
        content='Sure <tool_call>\n{"na',
        markup_in_text=True,
    ),
    Case("partial-tag-at-end", "Hello <tool_", content="Hello <tool_"),
    # All or none: every call of several in a row is a call, tagged, bare or fenced alike.
    Case(
        "bare-calls-in-a-row",
        bare("get_weather", W) + "\n" + bare("get_time", '{"tz": "UTC"}') + "\n",
        calls=(("get_weather", W), ("get_time", '{"tz": "UTC"}')),
    ),
    Case(
        "bare-calls-no-gap",
        bare("a", "{}") + bare("b", '{"x": 1}'),
        calls=(("a", "{}"), ("b", '{"x": 1}')),
    ),
    Case(
        "tagged-then-bare",
        tc("get_weather", W) + "\n" + bare("get_time", '{"tz": "UTC"}'),
        calls=(("get_weather", W), ("get_time", '{"tz": "UTC"}')),
    ),
    Case(
        "bare-then-tagged",
        bare("get_weather", W) + "\n" + tc("get_time", '{"tz": "UTC"}'),
        calls=(("get_weather", W), ("get_time", '{"tz": "UTC"}')),
    ),
    Case(
        "fenced-calls-in-a-row",
        f"```json\n{bare('a', W)}\n```\n```json\n{bare('b', '{}')}\n```",
        calls=(("a", W), ("b", "{}")),
    ),
    Case(
        "call-then-json-answer",
        tc("get_weather", W) + '\n{"answer": 4}',
        content='\n{"answer": 4}',
        calls=(("get_weather", W),),
    ),
    Case(
        "bare-call-cut-off",
        bare("a", "{}") + '\n{"name": "get_weather", "arguments": {"city": "Par',
        calls=(("a", "{}"), ("get_weather", '{"city": "Par')),
    ),
    Case(
        "markup-inside-arguments",
        tc("echo", '{"s": "</tool_call><tool_call>"}'),
        calls=(("echo", '{"s": "</tool_call><tool_call>"}'),),
    ),
]


def lj(name: str, parameters: str) -> str:
    return f'{{"name": "{name}", "parameters": {parameters}}}'


LLAMA3 = [
    Case("one-call", lj("get_weather", W), calls=(("get_weather", W),)),
    Case(
        "python-tag",
        "<|python_tag|>" + lj("get_weather", W),
        calls=(("get_weather", W),),
    ),
    Case(
        "type-function",
        '{"type": "function", "name": "f", "parameters": {"a": 1}}',
        calls=(("f", '{"a": 1}'),),
    ),
    Case(
        "parallel-semicolon",
        lj("a", '{"x": 1}') + "; " + lj("b", '{"y": 2}'),
        calls=(("a", '{"x": 1}'), ("b", '{"y": 2}')),
    ),
    Case(
        "parallel-newline",
        lj("a", '{"x": 1}') + "\n" + lj("b", "{}"),
        calls=(("a", '{"x": 1}'), ("b", "{}")),
    ),
    Case(
        "arguments-key",
        '\n{"name": "f", "arguments": {"q": "x"}}',
        calls=(("f", '{"q": "x"}'),),
    ),
    Case(
        "text-then-python-tag",
        "Let me search. <|python_tag|>" + lj("search", NESTED),
        content="Let me search.",
        calls=(("search", NESTED),),
    ),
    Case("nested-escaped", lj("search", NESTED), calls=(("search", NESTED),)),
    Case("unicode", lj("get_weather", UNICODE), calls=(("get_weather", UNICODE),)),
    Case("lenient-json", lj("f", LENIENT_RAW), calls=(("f", LENIENT),)),
    plain("json-answer", '{"answer": 42, "name": "x"}'),
    plain("json-with-name-only", '{"name": "Bob", "age": 3}'),
    plain("json-after-prose", 'Here it is: {"name": "f", "parameters": {}}'),
    Case(
        "builtin-tool",
        '<|python_tag|>brave_search.call(query="weather")',
        content='<|python_tag|>brave_search.call(query="weather")',
        markup_in_text=True,
    ),
    Case(
        "unterminated-call",
        '{"name": "f", "parameters": {"q": "abc',
        calls=(("f", '{"q": "abc'),),
    ),
    Case(
        "broken-arguments",
        '{"name": "f", "parameters": {"a": 1, "b": tru}}',
        calls=(("f", '{"a": 1}'),),
    ),
    plain("cut-before-parameters", '{"name": "f", "param'),
    Case("call-then-text", lj("f", "{}") + "\nDone.", content="\nDone.", calls=(("f", "{}"),)),
]

LIST_WITH_IDS = (
    '[TOOL_CALLS] [{"name": "get_weather", "arguments": ' + W + ', "id": "abcDEF123"}, '
    '{"name": "get_time", "arguments": {}, "id": "xyz987654"}]'
)
MISTRAL = [
    Case(
        "list-one-call",
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": ' + W + "}]",
        calls=(("get_weather", W),),
    ),
    Case("list-parallel-ids", LIST_WITH_IDS, calls=(("get_weather", W), ("get_time", "{}"))),
    Case(
        "list-no-space",
        '[TOOL_CALLS][{"name": "f", "arguments": ' + NESTED + "}]",
        calls=(("f", NESTED),),
    ),
    Case(
        "single-object",
        '[TOOL_CALLS] {"name": "f", "arguments": ' + UNICODE + "}",
        calls=(("f", UNICODE),),
    ),
    Case(
        "v11-call-id",
        "[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]" + W,
        calls=(("get_weather", W),),
    ),
    Case(
        "v13-parallel",
        "[TOOL_CALLS]get_weather[ARGS]" + W + "[TOOL_CALLS]get_time[ARGS]{}",
        calls=(("get_weather", W), ("get_time", "{}")),
    ),
    Case(
        "args-token-decoded-away",
        "[TOOL_CALLS]search" + NESTED,
        calls=(("search", NESTED),),
    ),
    Case(
        "text-then-call",
        "Sure, checking.\n\n[TOOL_CALLS]get_weather[ARGS]" + W,
        content="Sure, checking.",
        calls=(("get_weather", W),),
    ),
    Case("lenient-json", "[TOOL_CALLS]f[ARGS]" + LENIENT_RAW, calls=(("f", LENIENT),)),
    Case(
        "unterminated-list",
        '[TOOL_CALLS] [{"name": "f", "arguments": {"a": "b',
        calls=(("f", '{"a": "b'),),
    ),
    Case(
        "unterminated-v13",
        '[TOOL_CALLS]f[ARGS]{"a": [1, 2',
        calls=(("f", '{"a": [1, 2'),),
        streams_arguments=False,
    ),
    Case(
        "broken-v13-then-call",
        '[TOOL_CALLS]f[ARGS]{"a": 1, oops}[TOOL_CALLS]g[ARGS]{}',
        calls=(("f", '{"a": 1}'), ("g", "{}")),
    ),
    Case(
        "not-a-name",
        "[TOOL_CALLS] not a name",
        content="[TOOL_CALLS] not a name",
        markup_in_text=True,
    ),
    Case(
        "element-without-name",
        '[TOOL_CALLS] [{"foo": 1}]',
        content='[TOOL_CALLS] [{"foo": 1}]',
        markup_in_text=True,
    ),
    Case("partial-marker-at-end", "Hello [TOOL_", content="Hello [TOOL_"),
]

THINK = [
    *GENERIC,
    Case("think-in-prose", "Say <think> to me.", content="Say <think> to me.", markup_in_text=True),
    Case(
        "reasoning-then-content",
        "<think>\nThe user wants a haiku.\n\nSnow it is.\n</think>\n\nSoft snow falls.",
        reasoning="The user wants a haiku.\n\nSnow it is.",
        content="Soft snow falls.",
    ),
    Case("empty-reasoning", "<think>\n\n</think>\n\nHello!", content="Hello!"),
    Case("no-space", "<think>x</think>y", reasoning="x", content="y"),
    Case("unterminated", "<think>\nStill thinking about it", reasoning="Still thinking about it"),
    Case(
        "lookalike-tags",
        "<think>a </thinking> b <think> c</think>d",
        reasoning="a </thinking> b <think> c",
        content="d",
        markup_in_text=True,
    ),
    Case("unicode", "<think>東京 → 👋</think>\nÇa va.", reasoning="東京 → 👋", content="Ça va."),
    Case(
        "think-after-content",
        "Answer first. <think>then this</think>",
        content="Answer first. <think>then this</think>",
        markup_in_text=True,
    ),
    Case("partial-tag-only", "  <thi", content="  <thi"),
]

DEEPSEEK_R1 = [
    Case("prompt-opened", "Hmm, 2+2.\n</think>\n\n4", reasoning="Hmm, 2+2.", content="4"),
    Case("tag-repeated", "<think>\nHmm.\n</think>\n\n4", reasoning="Hmm.", content="4"),
    Case("unterminated", "Hmm, still", reasoning="Hmm, still"),
]

CALL_IN = {
    "hermes": ('<tool_call>\n{"name": "lookup", "arguments": {"q": "x"}}\n</tool_call>',),
    "llama3_json": ('<|python_tag|>{"name": "lookup", "parameters": {"q": "x"}}',),
    "mistral": ('[TOOL_CALLS]lookup[ARGS]{"q": "x"}',),
}
CALL_OUT = {
    "hermes": tc("get_weather", W),
    "llama3_json": "<|python_tag|>" + lj("get_weather", W),
    "mistral": "[TOOL_CALLS]get_weather[ARGS]" + W,
}


def pipeline_cases(tools: str) -> list[Case]:
    inside = CALL_IN[tools][0]
    outside = CALL_OUT[tools]
    return [
        Case(
            "reasoning-then-call",
            f"<think>\nI need the weather.\n</think>\n\n{outside}",
            reasoning="I need the weather.",
            calls=(("get_weather", W),),
        ),
        Case(
            "reasoning-then-text-and-call",
            f"<think>\nI need the weather.\n</think>\n\nChecking.\n{outside}",
            reasoning="I need the weather.",
            content="Checking.",
            calls=(("get_weather", W),),
        ),
        Case(
            "call-inside-reasoning",
            f"<think>\nLet me look it up.\n{inside}\n</think>\n\nDone.",
            reasoning="Let me look it up.",
            content="Done.",
            calls=(("lookup", '{"q": "x"}'),),
        ),
        Case(
            "call-inside-unclosed-reasoning",
            f"<think>\nLet me look it up.\n{inside}",
            reasoning="Let me look it up.",
            calls=(("lookup", '{"q": "x"}'),),
        ),
        Case(
            "calls-in-both",
            f"<think>\n{inside}\n</think>\n\n{outside}",
            calls=(("lookup", '{"q": "x"}'), ("get_weather", W)),
        ),
        Case(
            "empty-reasoning-then-call",
            f"<think>\n\n</think>\n\n{outside}",
            calls=(("get_weather", W),),
        ),
        Case(
            "reasoning-then-text",
            "<think>Easy.</think>\n\nIt is 4.",
            reasoning="Easy.",
            content="It is 4.",
        ),
        plain("no-reasoning", "Just an answer."),
    ]


R1_HERMES = [
    Case(
        "prompt-opened-then-call",
        "The user wants Paris.\n</think>\n\n" + tc("get_weather", W),
        reasoning="The user wants Paris.",
        calls=(("get_weather", W),),
    ),
    Case(
        "call-before-closing",
        "The user wants Paris.\n" + tc("get_weather", W),
        reasoning="The user wants Paris.",
        calls=(("get_weather", W),),
    ),
]

R = '{"city": "Rome", "unit": "celsius"}'
# With distinct_calls (tool_choice "required"): a call identical to an earlier one is dropped.
DISTINCT = {
    "hermes": (tc, "\n"),
    "llama3_json": (lj, "; "),
}


def cut_after(text: str, part: str) -> str:
    return text[: text.index(part) + len(part)]


def distinct_cases(tools: str) -> list[Case]:
    call, gap = DISTINCT[tools]
    return [
        Case(
            "identical-repeat-dropped",
            gap.join([call("get_weather", W), call("get_weather", W)]),
            calls=(("get_weather", W),),
            streams_arguments=False,
        ),
        Case(
            "same-function-other-arguments-kept",
            gap.join([call("get_weather", W), call("get_weather", R), call("get_weather", W)]),
            calls=(("get_weather", W), ("get_weather", R)),
            streams_arguments=False,
        ),
        Case(
            "other-functions-kept",
            gap.join([call("get_weather", W), call("get_time", "{}"), call("get_weather", R)]),
            calls=(("get_weather", W), ("get_time", "{}"), ("get_weather", R)),
            streams_arguments=False,
        ),
        Case(
            "repeat-cut-off",  # the output ends inside a repeat: it is no repeat yet
            gap.join([call("get_weather", W), cut_after(call("get_weather", W), '"cels')]),
            calls=(("get_weather", W), ("get_weather", '{"city": "Paris", "unit": "cels')),
            streams_arguments=False,
        ),
    ]


TOOL_CASES: dict[str, list[Case]] = {
    "hermes": HERMES,
    "llama3_json": LLAMA3,
    "mistral": MISTRAL,
}
REASONING_CASES: dict[str, list[Case]] = {
    "think": THINK,
    "qwen3": THINK,
    "deepseek_r1": DEEPSEEK_R1,
}

Factory = Callable[[IdFactory], ToolParser]


def counting_ids() -> IdFactory:
    numbers = itertools.count()
    return lambda: f"call_{next(numbers):024d}"


def tool_factory(name: str) -> Factory:
    cls = tool_parser(name)
    return lambda ids: cls(id_factory=ids)


def reasoning_factory(name: str, *, enabled: bool = True) -> Factory:
    cls = reasoning_parser(name)
    return lambda ids: OutputParser(reasoning=cls(enabled=enabled))


def pipeline_factory(reasoning: str, tools: str) -> Factory:
    return lambda ids: create_output_parser(
        tool_parser_name=tools, reasoning_parser_name=reasoning, id_factory=ids
    )


def distinct_factory(tools: str) -> Factory:
    return lambda ids: create_output_parser(
        tool_parser_name=tools, id_factory=ids, distinct_calls=True
    )


def subjects() -> Iterator[tuple[str, Factory, Case]]:
    for name in sorted(available_tool_parsers()):
        for case in GENERIC + TOOL_CASES.get(name, []):
            yield name, tool_factory(name), case
    for name in sorted(available_reasoning_parsers()):
        # Thinking disabled, any reasoning parser passes text through untouched.
        for case in GENERIC:
            yield f"{name}(disabled)", reasoning_factory(name, enabled=False), case
        for case in REASONING_CASES.get(name, []):
            yield name, reasoning_factory(name), case
    for tools in sorted(TOOL_CASES):
        for case in pipeline_cases(tools):
            yield f"think+{tools}", pipeline_factory("think", tools), case
    for case in R1_HERMES:
        yield "deepseek_r1+hermes", pipeline_factory("deepseek_r1", "hermes"), case
    for tools in sorted(DISTINCT):
        for case in distinct_cases(tools):
            yield f"distinct+{tools}", distinct_factory(tools), case


SUBJECTS = list(subjects())


def params(keep: Callable[[Case], bool] = lambda case: True) -> list[object]:
    return [
        pytest.param(factory, case, id=f"{name}-{case.label}")
        for name, factory, case in SUBJECTS
        if keep(case)
    ]


PARAMS = params()
CALL_PARAMS = params(lambda case: bool(case.calls))
TEXT_PARAMS = params(lambda case: not case.calls)
CLEAN_PARAMS = params(lambda case: not case.markup_in_text)


def summary(message: ParsedMessage) -> tuple[str, str, Calls]:
    calls = tuple((call.name, call.arguments) for call in message.tool_calls)
    return message.content, message.reasoning, calls


def run(factory: Factory, chunks: list[str]) -> tuple[list[ParsedDelta], ParsedMessage]:
    parser = factory(counting_ids())
    deltas = [parser.feed(chunk) for chunk in chunks]
    deltas.append(parser.finish())
    return deltas, fold(deltas)


def chunkings(text: str, seed: int) -> Iterator[list[str]]:
    yield [text]
    yield list(text)
    for cut in range(1, len(text)):
        yield [text[:cut], text[cut:]]
    for marker in MARKUP:  # every split inside every tag the text contains
        at = text.find(marker)
        if at >= 0:
            for inner in range(1, len(marker)):
                cut = at + inner
                yield [text[:cut], text[cut:]]
    rng = random.Random(seed)
    for _ in range(40):
        pieces, pos = [], 0
        while pos < len(text):
            size = rng.choice((1, 1, 2, 3, 5, 8, 13))
            pieces.append(text[pos : pos + size])
            pos += size
        yield pieces


def test_every_built_in_parser_has_format_cases() -> None:
    assert set(TOOL_CASES) <= set(available_tool_parsers())
    assert set(REASONING_CASES) <= set(available_reasoning_parsers())
    assert {"hermes", "llama3_json", "mistral"} <= set(TOOL_CASES)
    assert {"think", "deepseek_r1"} <= set(REASONING_CASES)


@pytest.mark.parametrize(("factory", "case"), PARAMS)
def test_one_shot_result_is_the_expected_message(factory: Factory, case: Case) -> None:
    parser = factory(counting_ids())
    message = parse_all(parser, case.text)
    assert summary(message) == case.expected()
    assert parser.tool_calls_found == bool(case.calls)


@pytest.mark.parametrize(("factory", "case"), PARAMS)
def test_split_invariance(factory: Factory, case: Case) -> None:
    _, expected = run(factory, [case.text])
    for chunks in chunkings(case.text, seed=len(case.text)):
        _, folded = run(factory, chunks)
        assert folded == expected, chunks


@pytest.mark.parametrize(("factory", "case"), PARAMS)
def test_delta_shape(factory: Factory, case: Case) -> None:
    for chunks in (list(case.text), [case.text]):
        deltas, _ = run(factory, chunks)
        started = -1
        for delta in deltas:
            for piece in delta.tool_calls:
                if piece.id is not None:
                    assert piece.index == started + 1, "calls start in index order"
                    assert piece.name, "the first delta of a call names it"
                    started = piece.index
                else:
                    assert piece.name is None, "only the first delta names the call"
                    assert 0 <= piece.index <= started, "fragments follow their call's start"
                    assert piece.arguments, "a later delta carries an argument fragment"


def assert_arguments(arguments: str, *, last: bool) -> None:
    """A call's arguments are a JSON object; only the output's last call may have been cut off
    (``max_tokens``), and then they are the text written so far, a prefix of an object, never
    closed or completed by the parser."""
    try:
        complete = isinstance(json.loads(arguments), dict)
    except json.JSONDecodeError:
        complete = False
    if complete:
        return
    assert last, f"only a cut-off last call may have unfinished arguments: {arguments!r}"
    scanner = JsonScanner()
    assert arguments == "" or (
        arguments.startswith("{") and scanner.feed(arguments) == len(arguments)
    ), arguments
    assert not scanner.failed and not scanner.done, arguments


@pytest.mark.parametrize(("factory", "case"), PARAMS)
def test_fragments_concatenate_to_json_object_arguments(factory: Factory, case: Case) -> None:
    deltas, message = run(factory, list(case.text))
    for index, call in enumerate(message.tool_calls):
        fragments = [p.arguments for d in deltas for p in d.tool_calls if p.index == index]
        assert "".join(fragments) == call.arguments
        assert_arguments(call.arguments, last=index == len(message.tool_calls) - 1)


@pytest.mark.parametrize(("factory", "case"), CLEAN_PARAMS)
def test_no_markup_leaks(factory: Factory, case: Case) -> None:
    for chunks in (list(case.text), [case.text]):
        _, message = run(factory, chunks)
        for marker in MARKUP:
            assert marker not in message.content
            assert marker not in message.reasoning


@pytest.mark.parametrize(("factory", "case"), CALL_PARAMS)
def test_ids_are_random_and_distinct(factory: Factory, case: Case) -> None:
    ids: list[str] = []
    for _ in range(3):
        ids += [call.id for call in parse_all(factory(new_call_id), case.text).tool_calls]
    assert ids and all(ID.fullmatch(call_id) for call_id in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(("factory", "case"), CALL_PARAMS)
def test_arguments_stream_as_they_are_written(factory: Factory, case: Case) -> None:
    deltas, _ = run(factory, list(case.text))
    for index, (_, arguments) in enumerate(case.calls):
        pieces = [p for d in deltas for p in d.tool_calls if p.index == index]
        if case.streams_arguments and len(arguments) > 12:
            assert len(pieces) > 3


@pytest.mark.parametrize(("factory", "case"), TEXT_PARAMS)
def test_text_streams_promptly(factory: Factory, case: Case) -> None:
    """Fed one character at a time, emitted text trails what was fed by no more than markup, an
    unfinished marker or blank run, or the start of JSON not yet known to be a call."""
    parser = factory(counting_ids())
    bound = 24 + sum(len(m) * case.text.count(m) for m in MARKUP)
    emitted = 0
    for fed, ch in enumerate(case.text, start=1):
        delta = parser.feed(ch)
        emitted += len(delta.content) + len(delta.reasoning)
        assert fed - emitted <= bound


NOISE = [*'{}[]":,\\ \n<>/tn0-', *MARKUP, '"name"', '"arguments"', "true", "x"]


def variants(text: str, rng: random.Random) -> Iterator[str]:
    """The text cut off at evenly spread points, and damaged at random."""
    for cut in range(0, len(text), max(1, len(text) // 30)):
        yield text[:cut]
    for _ in range(15):
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            at = rng.randint(0, len(chars))
            if chars and rng.random() < 0.4:
                del chars[min(at, len(chars) - 1)]
            else:
                chars.insert(at, rng.choice(NOISE))
        yield "".join(chars)


def assert_invariants(factory: Factory, text: str, rng: random.Random) -> None:
    _, expected = run(factory, [text])
    chunks, pos = [], 0
    while pos < len(text):
        size = rng.randint(1, 6)
        chunks.append(text[pos : pos + size])
        pos += size
    for pieces in (chunks, list(text)):
        deltas, folded = run(factory, pieces)
        assert folded == expected, pieces
        started = -1
        for piece in (p for d in deltas for p in d.tool_calls):
            if piece.id is not None:
                assert piece.index == started + 1 and piece.name
                started = piece.index
            else:
                assert piece.name is None and piece.arguments and piece.index <= started
    for index, call in enumerate(expected.tool_calls):
        assert_arguments(call.arguments, last=index == len(expected.tool_calls) - 1)


@pytest.mark.parametrize(("factory", "case"), PARAMS)
def test_cut_off_and_damaged_outputs_keep_the_invariants(factory: Factory, case: Case) -> None:
    rng = random.Random(case.text)
    for text in variants(case.text, rng):
        assert_invariants(factory, text, rng)
