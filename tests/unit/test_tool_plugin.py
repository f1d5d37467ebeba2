"""A tool-call format registered as a plugin gets ``tool_choice: "required"``, named calls and
``strict`` enforced exactly as the built-ins do, end to end in process.

The plugin format (``<call>{"name": ..., "arguments": ...}``) and a scripted engine both come
in through their registries' plugin readers, as entry points would bring them; the request goes
through the real app, chat template, tool plan, grammar compiler (llguidance, in its worker),
scheduler, sampler and output parser. Only the model is scripted: it "wants" to write a fixed
text, token by token, and when a constraint forbids its next token it prefers to end, then to
close what is open (``"``, ``}``), then the lowest allowed byte. So what comes back shows what
the constraints made of what the model wanted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jsonschema
import numpy as np
import numpy.typing as npt
import pytest

from pampero.api.app import create_app
from pampero.engines import registry as engine_registry
from pampero.engines.base import EngineOptions
from pampero.engines.batched import BatchedEngine, LoadedModel
from pampero.engines.scheduler import SchedulerConfig, Vocabulary
from pampero.inference import Capabilities
from pampero.parsers import registry as parser_registry
from pampero.parsers.calls import SKIP, TEXT, CallReader, ToolParserBase
from pampero.parsers.grammar import calls_schema
from pampero.registry import Registry
from pampero.settings import ModelConfig, Settings
from tests.fakes import CHATML_SPECIALS, ByteTokenizer, FakeRunner

HERE = __name__
CALL = "<call>"
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class AngleToolParser(ToolParserBase):
    """A plugin's format: ``<call>{"name": "f", "arguments": {...}}``, one per call, text
    between them is content. It owns its grammars, as every tool parser does."""

    markers = (CALL,)
    start_marker = CALL
    call_start = CALL

    @classmethod
    def call_rules(
        cls, functions: list[dict[str, Any]], *, strict_only: bool, parallel: bool
    ) -> str:
        one = f'"{CALL}" %json {calls_schema(functions, "arguments", strict_only=strict_only)}'
        calls = 'call_one ("\\n" call_one)*' if parallel else "call_one"
        return f"calls: {calls}\ncall_one: {one}\n"

    @classmethod
    def call_grammar(cls, functions: list[dict[str, Any]], *, opened: bool) -> str:
        return f"start: %json {calls_schema(functions, 'arguments', strict_only=True)}\n"

    def _step_format(self) -> bool:
        return self._open(strict=False)  # the only state of its own: right after <call>

    def _flush_format(self, rest: str) -> None:
        self._content(rest)

    def _after_call(self, reader: CallReader) -> int:
        return SKIP if reader.broken else TEXT


# -- the scripted model --------------------------------------------------------------------

TOKENIZER_SPECIALS = (*CHATML_SPECIALS, CALL, "<tool_call>", "</tool_call>")
SCRIPTS: dict[str, str] = {}  # the last user message -> what the model wants to answer


def tokens_of(text: str) -> list[int]:
    return ByteTokenizer(TOKENIZER_SPECIALS).encode(text)


class ScriptedRunner(FakeRunner):
    """Its logits peak at the next token of the script for the prompt's last user message;
    then, in order: end of text, ``"``, ``}``, the other bytes by value, blanks last. It
    follows its script as text: a marker the grammar spells byte by byte is still on script."""

    def __init__(self, tokenizer: ByteTokenizer) -> None:
        super().__init__(n_vocab=tokenizer.vocab_size, n_ctx_seq=2048, max_seqs=2, n_batch=512)
        self.tokenizer = tokenizer
        order = [tokenizer.ids["<|endoftext|>"], ord('"'), ord("}")]
        blanks = [ord(c) for c in " \t\n\r"]
        order += [i for i in range(256) if i not in order and i not in blanks] + blanks
        # 20 apart: sampling at any usual temperature is as good as greedy.
        self.fallback = np.full(tokenizer.vocab_size, -1e5, dtype=np.float32)
        self.fallback[order] = -20.0 * np.arange(1, len(order) + 1, dtype=np.float32)

    def logits_for(self, context: Sequence[int]) -> npt.NDArray[np.float32]:
        logits = self.fallback.copy()
        wanted = self._wanted(list(context))
        if wanted is not None:
            logits[wanted] = 0.0
        return logits

    def _wanted(self, context: list[int]) -> int | None:
        start = self.tokenizer.ids["<|im_start|>"]
        at = len(context) - 1 - context[::-1].index(start)
        user = max(i for i, t in enumerate(context) if t == start and i < at)
        prompt = self.tokenizer.decode(context[user:at], skip_special=True)
        script = SCRIPTS.get(prompt.removeprefix("user\n").strip())
        if script is None:
            return None
        written = context[at + len(tokens_of("<|im_start|>assistant\n")) :]
        text = self.tokenizer.decode(written, skip_special=False)
        if not script.startswith(text):
            return None  # the constraint made it write something else: it prefers to stop
        rest = tokens_of(script[len(text) :])
        return rest[0] if rest else None


def create_engine(options: EngineOptions) -> BatchedEngine:
    def load() -> LoadedModel:
        tokenizer = ByteTokenizer(TOKENIZER_SPECIALS)
        size = tokenizer.vocab_size
        return LoadedModel(
            runner=ScriptedRunner(tokenizer),
            tokenizer=tokenizer,
            vocabulary=Vocabulary(
                pieces=[tokenizer.token_bytes(i) for i in range(size)],
                special_ids=frozenset(range(256, size)),
                eog_ids=tokenizer.eog_token_ids,
            ),
            capabilities=Capabilities(context_length=2048, supports_tools=True),
            chat_template=TEMPLATE,
            close=lambda: None,
        )

    return BatchedEngine(
        options.model_id, load, SchedulerConfig(max_seqs=2, prefill_chunk=256, max_queue=8)
    )


@pytest.fixture(scope="module")
def plugins() -> Iterator[None]:
    """The engine and the tool format, registered the way entry points register plugins."""
    patch = pytest.MonkeyPatch()
    engines = engine_registry._ENGINES
    parsers = parser_registry._TOOL_PARSERS
    patch.setattr(
        engine_registry,
        "_ENGINES",
        Registry(
            engines.kind,
            engines.group,
            engines.available(),
            plugins=lambda group: [("scripted", f"{HERE}:create_engine")],
        ),
    )
    patch.setattr(
        parser_registry,
        "_TOOL_PARSERS",
        Registry(
            parsers.kind,
            parsers.group,
            parsers.available(),
            plugins=lambda group: [("angle", f"{HERE}:AngleToolParser")],
        ),
    )
    yield
    patch.undo()


class App:
    def __init__(self, client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client, self.loop = client, loop

    def chat(self, prompt: str, *, model: str = "fake", **fields: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], **fields}
        return self.loop.run_until_complete(self.client.post("/v1/chat/completions", json=body))


@pytest.fixture(scope="module")
def app(plugins: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    settings = Settings(
        models=[
            ModelConfig(id="fake", engine="scripted", tool_parser="angle"),
            ModelConfig(id="fake-hermes", engine="scripted", tool_parser="hermes"),
        ],
        home=tmp_path_factory.mktemp("home"),
    )
    asgi = create_app(settings)
    loop = asyncio.new_event_loop()

    @asynccontextmanager
    async def running() -> Any:
        async with asgi.router.lifespan_context(asgi):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield client

    context = running()
    client = loop.run_until_complete(context.__aenter__())
    try:
        yield App(client, loop)
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()


def function(name: str, parameters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters, **extra}}


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER = function("get_weather", WEATHER_SCHEMA)
STRICT_WEATHER = function("get_weather", WEATHER_SCHEMA, strict=True)
TIME = function("get_time", {"type": "object", "properties": {"tz": {"type": "string"}}})


def call_text(name: str, arguments: str) -> str:
    return f'{CALL}{{"name": "{name}", "arguments": {arguments}}}'


def calls_of(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    calls = choice["message"]["tool_calls"] or []
    if calls:
        assert choice["finish_reason"] == "tool_calls", choice
        assert not choice["message"]["content"] or CALL not in choice["message"]["content"]
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


def stream_choices(response: httpx.Response) -> list[dict[str, Any]]:
    """The choices of every chunk of a streamed response, in order."""
    assert response.status_code == 200, response.text
    chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line[6:7] == "{"]
    return [chunk["choices"][0] for chunk in chunks if chunk["choices"]]


def test_the_plugin_is_registered_beside_the_built_ins(plugins: None) -> None:
    assert parser_registry.tool_parser("angle") is AngleToolParser
    assert {"hermes", "angle"} <= set(parser_registry.available_tool_parsers())


def test_strict_binds_a_plugin_format_call_under_auto(app: App) -> None:
    SCRIPTS["strict?"] = call_text("get_weather", '{"city": "Paris", "extra": 1}')
    loose = calls_of(app.chat("strict?", tools=[WEATHER], max_tokens=200))
    assert loose == [("get_weather", {"city": "Paris", "extra": 1})]  # what the model wants
    strict = calls_of(app.chat("strict?", tools=[STRICT_WEATHER], max_tokens=200))
    assert [name for name, _ in strict] == ["get_weather"]
    jsonschema.validate(strict[0][1], WEATHER_SCHEMA)
    assert strict[0][1]["city"] == "Paris"


def test_required_makes_a_call_in_the_plugin_format(app: App) -> None:
    SCRIPTS["just chat"] = "Hello! Nice to meet you."
    assert calls_of(app.chat("just chat", tools=[WEATHER], max_tokens=200)) == []
    forced = calls_of(app.chat("just chat", tools=[WEATHER], tool_choice="required"))
    assert [name for name, _ in forced] == ["get_weather"]
    jsonschema.validate(forced[0][1], WEATHER_SCHEMA)


def test_a_named_choice_gives_exactly_one_call(app: App) -> None:
    paris = call_text("get_weather", '{"city": "Paris", "unit": "celsius"}')
    rome = call_text("get_weather", '{"city": "Rome", "unit": "celsius"}')
    SCRIPTS["two cities"] = f"{paris}\n{rome}"
    auto = calls_of(app.chat("two cities", tools=[WEATHER, TIME], max_tokens=200))
    assert [args["city"] for _, args in auto] == ["Paris", "Rome"]
    named = {"type": "function", "function": {"name": "get_weather"}}
    one = calls_of(app.chat("two cities", tools=[WEATHER, TIME], tool_choice=named))
    assert one == [("get_weather", {"city": "Paris", "unit": "celsius"})]
    single = calls_of(
        app.chat("two cities", tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
    )
    assert single == one


def test_required_never_repeats_a_call(app: App) -> None:
    paris = call_text("get_weather", '{"city": "Paris", "unit": "celsius"}')
    rome = call_text("get_weather", '{"city": "Rome", "unit": "celsius"}')
    SCRIPTS["loop"] = "\n".join([paris, rome, paris, paris, paris, paris])
    looping = app.chat("loop", tools=[WEATHER], tool_choice="required", max_tokens=400)
    assert [args["city"] for _, args in calls_of(looping)] == ["Paris", "Rome"]
    usage = looping.json()["usage"]
    # The output ended at the first repeat, not at max_tokens.
    assert usage["completion_tokens"] < len(tokens_of("\n".join([paris, rome, paris, paris])))
    streamed = app.chat(
        "loop", tools=[WEATHER], tool_choice="required", max_tokens=400, stream=True
    )
    names: list[str] = []
    arguments: dict[int, str] = {}
    for choice in stream_choices(streamed):
        for piece in choice["delta"].get("tool_calls") or []:
            if "id" in piece:
                names.append(piece["function"]["name"])
            fragment = piece["function"]["arguments"]
            arguments[piece["index"]] = arguments.get(piece["index"], "") + fragment
    cities = [json.loads(arguments[i])["city"] for i in sorted(arguments)]
    assert names == ["get_weather", "get_weather"] and cities == ["Paris", "Rome"]
    assert stream_choices(streamed)[-1]["finish_reason"] == "tool_calls"


def test_a_call_cut_by_max_tokens_keeps_its_arguments_as_written(app: App) -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    SCRIPTS["cut"] = call_text("get_weather", arguments)
    budget = len(tokens_of(call_text("get_weather", '{"city": "Par')))
    for stream in (False, True):
        response = app.chat("cut", tools=[WEATHER], max_tokens=budget, stream=stream)
        if stream:
            deltas = stream_choices(response)
            finish = deltas[-1]["finish_reason"]
            written = "".join(
                call["function"]["arguments"]
                for d in deltas
                for call in d["delta"].get("tool_calls") or []
            )
        else:
            choice = response.json()["choices"][0]
            finish = choice["finish_reason"]
            (call,) = choice["message"]["tool_calls"]
            written = call["function"]["arguments"]
        assert finish == "length"
        # What the model wrote before the cut, not closed into '{"city": "Par"}' or '{}'.
        assert written.startswith('{"city": "Par') and arguments.startswith(written)
        assert written != arguments


# -- the built-in Hermes format, on the same scripted model -------------------------------


def bare(name: str, arguments: str) -> str:
    return f'{{"name": "{name}", "arguments": {arguments}}}'


def test_strict_binds_bare_calls_from_their_first_token(app: App) -> None:
    """Small Qwen models often write the call object with no <tool_call> tag; under strict,
    such a call is bound from its "{", and so is every bare call after it."""
    wrong = bare("get_weather", '{"city": "Paris", "extra": 1}')
    SCRIPTS["bare"] = f"{wrong}\n{wrong}"
    hermes = {"model": "fake-hermes", "max_tokens": 300}
    loose = calls_of(app.chat("bare", tools=[WEATHER], **hermes))
    assert loose == [("get_weather", {"city": "Paris", "extra": 1})] * 2  # what it wants
    strict = calls_of(app.chat("bare", tools=[STRICT_WEATHER], **hermes))
    assert [name for name, _ in strict] == ["get_weather"]
    jsonschema.validate(strict[0][1], WEATHER_SCHEMA)


def test_strict_leaves_plain_answers_alone(app: App) -> None:
    SCRIPTS["hello"] = "Hello! Nothing to call here."
    choice = app.chat("hello", model="fake-hermes", tools=[STRICT_WEATHER]).json()["choices"][0]
    assert choice["message"]["content"] == "Hello! Nothing to call here."
    assert not choice["message"]["tool_calls"]


ANSWER = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "a", "schema": ANSWER}}


def test_strict_and_response_format_both_bind(app: App) -> None:
    fields = {"model": "fake-hermes", "tools": [STRICT_WEATHER], "max_tokens": 300}
    SCRIPTS["answer"] = '{"answer": "four", "why": "sums"}'
    choice = app.chat("answer", response_format=RESPONSE_FORMAT, **fields).json()["choices"][0]
    assert not choice["message"]["tool_calls"]
    jsonschema.validate(json.loads(choice["message"]["content"]), ANSWER)
    SCRIPTS["call"] = "<tool_call>\n" + bare("get_weather", '{"city": "Paris", "extra": 1}')
    calls = calls_of(app.chat("call", response_format=RESPONSE_FORMAT, **fields))
    assert [name for name, _ in calls] == ["get_weather"]
    jsonschema.validate(calls[0][1], WEATHER_SCHEMA)


def test_strict_with_an_answer_format_it_cannot_join_is_refused(app: App) -> None:
    response = app.chat(
        "answer",
        model="fake-hermes",
        tools=[STRICT_WEATHER],
        response_format={"type": "json_object"},
        guided_decoding_backend="xgrammar",
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "response_format"
