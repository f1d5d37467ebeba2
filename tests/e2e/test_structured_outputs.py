"""Structured outputs on the real model: every spelling, every backend, and the 400s.

Each answer is checked as a client would: parsed and validated with ``jsonschema``, matched in
full with ``re``, or found among the choices. A constraint that cannot be honoured is a 400
naming the field, before any generation; never a 200 that ignored it.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
import pydantic
import pytest

from tests.e2e.harness import MODEL_ID, check_chat

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
INVENT = "Invent a person."
ANSWER = 'Return the JSON object {"answer": 42} and nothing else.'
PHONE = r"\(\d{3}\) \d{3}-\d{4}"
YES_NO = ["yes", "no"]
GBNF = 'root ::= "The answer is " [0-9]+ "."'
LARK = 'start: "The answer is " /[0-9]+/ "."'
SIX_BY_SEVEN = "What is 6*7?"
BACKENDS = ("xgrammar", "guidance", "outlines", "lm-format-enforcer", "auto")


def content(body, index=0):
    return body["choices"][index]["message"]["content"]


def person(text):
    value = json.loads(text)
    jsonschema.validate(value, PERSON)
    return value


def json_object(text):
    assert isinstance(json.loads(text), dict), text


def fullmatch(pattern):
    def check(text):
        assert re.fullmatch(pattern, text), text

    return check


def one_of(options):
    def check(text):
        assert text in options, text

    return check


GRAMMAR_ANSWER = fullmatch(r"The answer is [0-9]+\.")
# kind -> (prompt, constraint fields, check of the answer's text)
KINDS = {
    "json_schema": (INVENT, {"guided_json": PERSON}, person),
    "json_object": (ANSWER, {"response_format": {"type": "json_object"}}, json_object),
    "regex": ("Give a US phone number.", {"guided_regex": PHONE}, fullmatch(PHONE)),
    "choice": ("Is the sky blue? Answer yes or no.", {"guided_choice": YES_NO}, one_of(YES_NO)),
    "gbnf": (SIX_BY_SEVEN, {"guided_grammar": GBNF}, GRAMMAR_ANSWER),
    "lark": (SIX_BY_SEVEN, {"guided_grammar": LARK}, GRAMMAR_ANSWER),
}
# What each named backend cannot express (docs/structured-outputs.md, "Backends").
CANNOT = {"outlines": {"gbnf", "lark"}, "lm-format-enforcer": {"gbnf", "lark"}}
# What a named backend may refuse for its masks' cost per token (its first tokens are timed
# when it compiles): lm-format-enforcer spends ~30 ms of CPU per token on any JSON object here.
MAY_COST_TOO_MUCH = {"lm-format-enforcer": {"json_object"}}


@pytest.fixture(scope="module")
def patient_api(launch):
    """For the tests naming a backend: outlines and lm-format-enforcer compile in seconds on an
    idle machine, which a busy one can stretch past the default 5 s deadline."""
    with launch("--constraint-deadline", "120") as running:
        client = running.api()
        yield client
        client.close()


# --- the seeds' examples ---------------------------------------------------------------


def seed_choice(api, body):
    """POST a seed's body to the seed documents' own path; its one choice."""
    response = api.post("/functions/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    check_chat(response.json())
    return response.json()["choices"][0]


def test_seed_000_guided_choice_with_text_content(api):
    # Seed 000's body for OpenGVLab/InternVL3-2B, with its image part dropped: the default
    # model reads text only.
    text = [{"type": "text", "text": "Describe la imagen."}]
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": text}], "max_tokens": 50}
    body |= {"top_k": 10, "guided_choice": ["Es un perro.", "Es un gato."]}
    choice = seed_choice(api, body)
    assert choice["message"]["content"] in ("Es un perro.", "Es un gato.")
    assert choice["finish_reason"] == "stop"


def test_seed_001_guided_regex_verbatim(api):
    hola = [{"role": "user", "content": "Hola, cómo estás?"}]
    body = {"model": "Qwen/Qwen3-1.7B", "messages": hola, "max_tokens": 200, "top_k": 20}
    body |= {"repetition_penalty": 1.1, "guided_regex": ".*\\?$"}
    choice = seed_choice(api, body)
    text = choice["message"]["content"]
    assert "\n" not in text  # '.' is not a newline, on every backend
    if choice["finish_reason"] == "stop":
        assert re.fullmatch(r".*\?$", text), text
    else:
        assert choice["finish_reason"] == "length"


# --- every spelling ----------------------------------------------------------------------

FORMAT = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
STRICT = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON, "strict": True}}
SPELLINGS = {
    "response_format": {"response_format": FORMAT},
    "response_format-strict": {"response_format": STRICT},
    "guided_json": {"guided_json": PERSON},
    "guided_json-string": {"guided_json": json.dumps(PERSON)},
    "structured_outputs": {"structured_outputs": {"json": PERSON}},
    "structured_outputs-string": {"structured_outputs": {"json": json.dumps(PERSON)}},
}


@pytest.mark.parametrize("fields", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_json_schema_spellings(api, fields):
    body = api.chat(INVENT, max_tokens=40, **fields)
    assert body["choices"][0]["finish_reason"] == "stop"
    person(content(body))


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"response_format": {"type": "json_object"}}, "json_object"),
        ({"structured_outputs": {"json_object": True}}, "json_object"),
        ({"structured_outputs": {"regex": PHONE}}, "regex"),
        ({"structured_outputs": {"choice": YES_NO}}, "choice"),
        ({"structured_outputs": {"grammar": GBNF}}, "gbnf"),
        ({"structured_outputs": {"grammar": LARK}}, "lark"),
    ],
)
def test_other_spellings(api, fields, kind):
    # guided_regex, guided_choice and guided_grammar: test_backend_on_each_kind.
    body = api.chat(KINDS[kind][0], max_tokens=30, **fields)
    assert body["choices"][0]["finish_reason"] == "stop"
    KINDS[kind][2](content(body))


def test_response_format_text_is_no_constraint(exact_api):
    plain = content(exact_api.chat(SIX_BY_SEVEN, max_tokens=6))
    text = exact_api.chat(SIX_BY_SEVEN, max_tokens=6, response_format={"type": "text"})
    assert content(text) == plain


# --- every backend -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_on_each_kind(patient_api, backend):
    for kind, (prompt, fields, check) in KINDS.items():
        body = patient_api.chat_body(
            prompt, {"max_tokens": 30, "guided_decoding_backend": backend, **fields}
        )
        if kind in CANNOT.get(backend, ()):
            error = patient_api.error(CHAT, body, 400)
            assert error["param"] == "guided_grammar", error
            assert error["code"] == "unsupported_parameter"
            assert backend in error["message"]
            continue
        if kind in MAY_COST_TOO_MUCH.get(backend, ()):
            response = patient_api.post(CHAT, body)
            if response.status_code == 400:
                error = response.json()["error"]
                assert error["code"] == "unsupported_parameter", error
                assert "CPU time" in error["message"] and backend in error["message"], error
                continue
        answer = patient_api.chat(**body)
        assert answer["choices"][0]["finish_reason"] == "stop", (kind, answer)
        check(content(answer))


def outside_strings(text):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)


@pytest.mark.parametrize("backend", ["guidance", "outlines", "auto"])
def test_whitespace_pattern_empty_means_compact_json(patient_api, backend):
    # "" allows no whitespace at all between JSON tokens: not the same as no pattern.
    for fields in (
        {"guided_json": PERSON, "guided_whitespace_pattern": ""},
        {"structured_outputs": {"json": PERSON, "whitespace_pattern": ""}},
    ):
        body = patient_api.chat(INVENT, max_tokens=40, guided_decoding_backend=backend, **fields)
        person(content(body))
        assert not re.search(r"\s", outside_strings(content(body))), (fields, content(body))


def test_whitespace_pattern_with_json_object(api):
    fields = {"response_format": {"type": "json_object"}, "guided_whitespace_pattern": " "}
    text = content(api.chat(ANSWER, max_tokens=30, **fields))
    json_object(text)
    assert "\n" not in outside_strings(text), text


@pytest.mark.parametrize("backend", ["xgrammar", "lm-format-enforcer"])
def test_whitespace_pattern_on_a_backend_without_one(api, backend):
    fields = {"guided_json": PERSON, "guided_whitespace_pattern": "[ ]?"}
    body = api.chat_body(INVENT, {"guided_decoding_backend": backend, **fields})
    error = api.error(CHAT, body, 400)
    assert error["param"] in ("guided_whitespace_pattern", "guided_json"), error
    assert "whitespace pattern" in error["message"] and backend in error["message"]


# --- generation under a constraint -------------------------------------------------------


@pytest.mark.parametrize("kind", ["json_schema", "choice", "lark"])
def test_stream_equals_non_stream_under_a_constraint(exact_api, kind):
    prompt, fields, _check = KINDS[kind]
    whole = exact_api.chat(prompt, max_tokens=30, **fields)
    streamed = exact_api.stream_chat(prompt, max_tokens=30, **fields)
    assert streamed.texts() == [content(whole)]
    assert streamed.choices[0].finish_reason == whole["choices"][0]["finish_reason"] == "stop"
    KINDS[kind][2](streamed.texts()[0])


def test_n2_under_a_constraint(api):
    body = api.chat(INVENT, n=2, seed=3, temperature=1.0, max_tokens=40, guided_json=PERSON)
    assert len(body["choices"]) == 2
    for choice in body["choices"]:
        assert choice["finish_reason"] == "stop"
        person(choice["message"]["content"])
    streamed = api.stream_chat(INVENT, n=2, temperature=1.0, max_tokens=40, guided_choice=YES_NO)
    assert all(text in YES_NO for text in streamed.texts())


def test_logprobs_under_a_constraint(api):
    body = api.chat(INVENT, max_tokens=40, guided_json=PERSON, logprobs=True, top_logprobs=2)
    entries = body["choices"][0]["logprobs"]["content"]
    assert len(entries) == body["usage"]["completion_tokens"]
    assert "".join(entry["token"] for entry in entries) == content(body)
    assert all(entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 2 for entry in entries)
    person(content(body))
    streamed = api.stream_chat(SIX_BY_SEVEN, max_tokens=10, guided_grammar=LARK, logprobs=True)
    tokens = "".join(entry["token"] for entry in streamed.choices[0].logprobs)
    assert tokens == streamed.texts()[0]
    GRAMMAR_ANSWER(tokens)


def test_max_tokens_cuts_json_with_length(exact_api):
    whole = content(exact_api.chat(INVENT, max_tokens=40, guided_json=PERSON))
    cut = exact_api.chat(INVENT, max_tokens=5, guided_json=PERSON)
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 5
    assert whole.startswith(content(cut))  # a valid prefix of the answer
    with pytest.raises(json.JSONDecodeError):
        json.loads(content(cut))


def test_completions_under_a_constraint(api):
    capital = api.complete("The capital of France is", guided_choice=["Paris", "Rome"])
    assert capital["choices"][0]["text"] in ("Paris", "Rome")
    digits = api.complete("Q: 2+2?\nA:", guided_regex=" [0-9]+", max_tokens=4)
    assert re.fullmatch(" [0-9]+", digits["choices"][0]["text"])
    schema = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
    record = api.complete("Person:", max_tokens=30, response_format=schema)
    assert record["choices"][0]["finish_reason"] == "stop"
    person(record["choices"][0]["text"])
    streamed = api.stream_complete("Q: 2+2?\nA:", guided_regex=" [0-9]+", max_tokens=4)
    assert re.fullmatch(" [0-9]+", streamed.texts()[0])


class Persona(pydantic.BaseModel):
    nombre: str
    edad: int


def test_openai_sdk_parse_with_a_pydantic_model(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client:
        completion = client.chat.completions.parse(
            model=MODEL_ID,
            messages=[{"role": "user", "content": "Inventá una persona."}],
            response_format=Persona,
            max_tokens=40,
            temperature=0,
        )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(message.parsed, Persona)
    assert message.parsed == Persona.model_validate_json(message.content)


THREAD = {  # replies must name their author: guidance intersects a $ref it is still defining
    "$defs": {
        "comment": {
            "type": "object",
            "properties": {
                "author": {"type": "string", "maxLength": 20},
                "text": {"type": "string", "maxLength": 60},
                "replies": {
                    "type": "array",
                    "maxItems": 2,
                    "items": {"allOf": [{"$ref": "#/$defs/comment"}, {"required": ["author"]}]},
                },
            },
            "required": ["text"],
        }
    },
    "$ref": "#/$defs/comment",
}


@pytest.mark.parametrize("backend", ["guidance", "auto"])
def test_recursive_schema_with_intersections(api, backend):
    """The Washington Post's shape: a recursive definition meeting allOf on its way back."""
    response = api.post(
        CHAT,
        {
            "model": MODEL_ID,
            "messages": [{"role": "user", "content": "A comment with one reply, as JSON."}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "thread", "schema": THREAD, "strict": True},
            },
            "guided_decoding_backend": backend,
            "max_tokens": 300,
            "temperature": 0,
        },
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    if choice["finish_reason"] == "stop":
        jsonschema.validate(json.loads(choice["message"]["content"]), THREAD)
    else:
        assert choice["finish_reason"] == "length"


# --- bad input: 400 naming the field, before any generation ------------------------------

NO_SCHEMA = {"type": "json_schema", "json_schema": {"name": "x"}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"guided_regex": "a", "guided_choice": ["a"]}, "guided_choice"),
        ({"response_format": {"type": "json_object"}, "guided_json": PERSON}, "guided_json"),
        ({"guided_json": PERSON, "structured_outputs": {"regex": "a"}}, "structured_outputs"),
        ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs.choice"),
        ({"structured_outputs": {}}, "structured_outputs"),
        ({"guided_regex": "(abc"}, "guided_regex"),
        ({"structured_outputs": {"regex": "[z-a]"}}, "structured_outputs.regex"),
        ({"guided_json": {"type": "frobnicate"}}, "guided_json"),
        ({"guided_json": {"minLength": "three"}}, "guided_json"),
        ({"guided_json": "not json"}, "guided_json"),
        ({"guided_json": "[1, 2]"}, "guided_json"),
        ({"guided_grammar": 'root ::= "a" |'}, "guided_grammar"),
        ({"guided_grammar": 'start: ( "a"'}, "guided_grammar"),
        ({"structured_outputs": {"grammar": "root ::= ( "}}, "structured_outputs.grammar"),
        ({"response_format": NO_SCHEMA}, "response_format.json_schema.schema"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"guided_choice": []}, "guided_choice"),
        ({"guided_choice": [1, 2]}, "guided_choice[0]"),
        ({"guided_json": 5}, "guided_json"),
        ({"guided_grammar": ""}, "guided_grammar"),
        ({"structured_outputs": {"regex": 5}}, "structured_outputs.regex"),
        ({"guided_regex": "a", "guided_decoding_backend": 5}, "guided_decoding_backend"),
        ({"guided_decoding_backend": "xgrammar"}, "guided_decoding_backend"),
        ({"guided_whitespace_pattern": " "}, "guided_whitespace_pattern"),
        ({"guided_regex": "a", "guided_whitespace_pattern": " "}, "guided_whitespace_pattern"),
        ({"guided_json": PERSON, "guided_whitespace_pattern": "("}, "guided_whitespace_pattern"),
    ],
)
def test_bad_constraints_name_the_field(api, fields, param):
    error = api.error(CHAT, api.chat_body("Hi", fields), 400)
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


def test_unknown_backend_and_beam_search(api):
    body = api.chat_body("Hi", {"guided_regex": "a", "guided_decoding_backend": "nope"})
    error = api.error(CHAT, body, 400)
    assert error["param"] == "guided_decoding_backend"
    assert all(name in error["message"] for name in BACKENDS), error  # the available ones
    body = api.chat_body("Hi", {"use_beam_search": True, "n": 2, "guided_choice": YES_NO})
    assert api.error(CHAT, body, 400)["param"] == "use_beam_search"


def nested(depth):
    schema = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def strict(schema):
    """``response_format`` with ``strict: true``: a schema past the server's limits is a 400
    (without ``strict`` it is relaxed and checked after generation: test_schema_semantics)."""
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}


CHAIN = {f"a{i}": {"$ref": f"#/$defs/a{i + 1}"} for i in range(200)} | {"a200": {"type": "string"}}
PATHOLOGICAL = {
    "regex-count": {"guided_regex": "(a+)+b{1000000}"},
    "regex-groups": {"guided_regex": "(" * 300 + "a" + ")" * 300},
    "maxLength": {"response_format": strict({"type": "string", "maxLength": 10**7})},
    "minItems": {"response_format": strict({"type": "array", "minItems": 10**6})},
    "ref-cycle": {"guided_json": {"$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"}},
    "ref-chain": {"response_format": strict({"$defs": CHAIN, "$ref": "#/$defs/a0"})},
    "ref-dangling": {"guided_json": {"$ref": "#/$defs/missing"}},
    "nested-70": {"response_format": strict(nested(70))},  # 140 levels, over the limit of 128
    "nested-300": {"guided_json": nested(300)},
}


@pytest.mark.parametrize("fields", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_pathological_constraints_are_refused(api, fields):
    error = api.error(CHAT, api.chat_body("Hi", fields), 400)
    name = next(iter(fields))
    assert error["param"].startswith(name), error


# Nested quantifiers whose expansion no regex-to-automaton backend can finish: only the
# compile deadline stops them. The compile runs in a worker that is killed; the server and
# the requests decoding meanwhile carry on. The deadline is the worker's CPU time: a 400 once it
# has spent it, or a 429 to retry if a machine so busy that the (lower-priority) worker could not
# spend it passes the wall-clock backstop first.
EXPLODING = "(a{1,99999}){1,99999}"


def refused_past_the_deadline(api, body):
    response = api.post(CHAT, body)
    assert response.status_code in (400, 429), response.text
    error = response.json()["error"]
    if response.status_code == 429:
        assert "too busy" in error["message"] and response.headers["retry-after"], error
        return None
    assert error["param"] == "guided_regex", error
    assert "CPU time to compile" in error["message"], error
    return error


@pytest.mark.parametrize("backend", ["outlines", "lm-format-enforcer"])
def test_compile_past_the_deadline_is_a_400_and_others_still_run(api, backend):
    body = api.chat_body("Hi", {"guided_regex": EXPLODING, "guided_decoding_backend": backend})
    with ThreadPoolExecutor(max_workers=2) as pool:
        refused = pool.submit(refused_past_the_deadline, api, body)
        normal = pool.submit(api.chat, INVENT, max_tokens=40, guided_json=PERSON)
        refused.result()
        person(content(normal.result()))
    after = api.chat(KINDS["choice"][0], guided_choice=YES_NO, guided_decoding_backend=backend)
    assert content(after) in YES_NO  # a fresh worker took over
