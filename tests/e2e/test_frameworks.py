"""Agent frameworks against one real pampero on the default model (issue 18): openai-agents
(through the Responses API, its default), pydantic-ai, LangChain (chat and
``use_responses_api=True``), instructor and LiteLLM.

Each runs a two-step tool task (the model calls ``add``, the framework runs it and sends the
result back, the model answers) and a structured-output task, with bounded loops. The 0.5B
model calls a tool again instead of answering once it has a tool result, with or without
tools on offer (docs/tools.md), so the call is forced with the framework's own ``tool_choice``
and the answer after the tool result is asked for as a structured object, which pampero's
constraint guarantees. What pampero controls is checked: the call is parsed with valid
arguments and run once, the tool result reaches the model (the answer holds the sum only the
tool computed), no message carries call markup, and every object validates.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel

from tests.e2e.harness import MODEL_ID

pytestmark = pytest.mark.e2e

A, B = 1234, 4321
QUESTION = f"What is {A} + {B}? Use the add tool."
MARKUP = ("<tool_call>", '"arguments"', '"name": "add"')


class Answer(BaseModel):
    result: int


class Person(BaseModel):
    name: str
    age: int


def no_markup(text: str | None) -> None:
    assert not any(mark in (text or "") for mark in MARKUP), text


@pytest.fixture
def calls() -> list[tuple[int, int]]:
    return []


@pytest.fixture(autouse=True)
def closed_loop() -> Any:
    """Each test gets a current event loop that is closed after it. pydantic-ai's ``run_sync``
    (and other frameworks' sync entry points) create and install one when none is set and
    never close it; a later ``asyncio.run`` drops it and the garbage collector then warns
    about its unclosed self-pipe socket in whatever test happens to be running."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


# -- openai-agents (Responses API) --------------------------------------------------------


def test_openai_agents_tool_then_answer(server: Any, calls: list[tuple[int, int]]) -> None:
    agents = pytest.importorskip("agents")
    from openai import AsyncOpenAI

    agents.set_tracing_disabled(True)
    # The client is closed inside the loop that used it (an unclosed one warns, which fails).
    client = AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    model = agents.OpenAIResponsesModel(model=MODEL_ID, openai_client=client)

    @agents.function_tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        calls.append((a, b))
        return a + b

    caller = agents.Agent(
        name="calculator",
        instructions="Use the add tool to compute sums.",
        tools=[add],
        model=model,
        model_settings=agents.ModelSettings(tool_choice="required", temperature=0, max_tokens=64),
        tool_use_behavior="stop_on_first_tool",
    )
    answerer = agents.Agent(
        name="reporter",
        instructions="Report the sum the add tool returned.",
        model=model,
        output_type=Answer,
        model_settings=agents.ModelSettings(temperature=0, max_tokens=32),
    )

    async def run() -> tuple[Any, Any]:
        async with client:
            first = await agents.Runner.run(caller, QUESTION, max_turns=2)
            second = await agents.Runner.run(answerer, first.to_input_list(), max_turns=1)
        return first, second

    first, second = asyncio.run(run())
    assert calls == [(A, B)]
    items = first.to_input_list()
    assert [item.get("type", "message") for item in items] == [
        "message",
        "function_call",
        "function_call_output",
    ]
    assert second.final_output == Answer(result=A + B)
    for item in second.new_items:
        if item.type == "message_output_item":
            no_markup(agents.ItemHelpers.text_message_output(item))


def test_openai_agents_streamed_structured_output(server: Any) -> None:
    agents = pytest.importorskip("agents")
    from openai import AsyncOpenAI

    agents.set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    agent = agents.Agent(
        name="extractor",
        instructions="Extract the person.",
        model=agents.OpenAIResponsesModel(model=MODEL_ID, openai_client=client),
        output_type=Person,
        model_settings=agents.ModelSettings(temperature=0, max_tokens=48),
    )

    async def run() -> tuple[Any, list[str]]:
        async with client:
            result = agents.Runner.run_streamed(agent, "Ana is 30 years old.", max_turns=1)
            kinds = [
                event.data.type
                async for event in result.stream_events()
                if event.type == "raw_response_event"
            ]
        return result, kinds

    result, kinds = asyncio.run(run())
    assert isinstance(result.final_output, Person) and result.final_output.age == 30
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds


# -- pydantic-ai ----------------------------------------------------------------------------


@pytest.fixture
def pydantic_ai_model(server: Any, closed_loop: asyncio.AbstractEventLoop) -> Any:
    """pydantic-ai's model over a client of its own, closed on the loop ``run_sync`` used (the
    current one, ``closed_loop``): its pooled connections would otherwise outlive the loop."""
    openai_models = pytest.importorskip("pydantic_ai.models.openai")
    from openai import AsyncOpenAI
    from pydantic_ai.providers.openai import OpenAIProvider

    client = AsyncOpenAI(base_url=server.url + "/v1", api_key="unused")
    yield openai_models.OpenAIChatModel(MODEL_ID, provider=OpenAIProvider(openai_client=client))
    closed_loop.run_until_complete(client.close())


def test_pydantic_ai_tool_then_answer(pydantic_ai_model: Any, calls: list[tuple[int, int]]) -> None:
    pydantic_ai = pytest.importorskip("pydantic_ai")
    from pydantic_ai.messages import ToolReturnPart

    def add_returned(ctx: Any) -> bool:
        return any(
            isinstance(part, ToolReturnPart) and part.tool_name == "add"
            for message in ctx.messages
            for part in getattr(message, "parts", ())
        )

    async def until_answered(ctx: Any, definition: Any) -> Any:
        # ``add`` is offered until it has answered; then only the output tool is, so the
        # model's repeat call has nowhere to go (see the module docstring).
        return None if add_returned(ctx) else definition

    agent = pydantic_ai.Agent(
        pydantic_ai_model,
        output_type=Answer,
        instructions="Use the add tool, then report its result.",
        model_settings={"temperature": 0, "max_tokens": 64},
    )

    @agent.tool_plain(prepare=until_answered)
    def add(a: int, b: int) -> int:
        """Add two integers."""
        calls.append((a, b))
        return a + b

    result = agent.run_sync(QUESTION, usage_limits=pydantic_ai.UsageLimits(request_limit=4))
    assert calls == [(A, B)]
    assert result.output == Answer(result=A + B)
    for message in result.all_messages():
        for part in message.parts:
            if part.part_kind == "text":
                no_markup(part.content)


def test_pydantic_ai_structured_output(pydantic_ai_model: Any) -> None:
    pydantic_ai = pytest.importorskip("pydantic_ai")
    agent = pydantic_ai.Agent(
        pydantic_ai_model,
        output_type=pydantic_ai.NativeOutput(Person),
        model_settings={"temperature": 0, "max_tokens": 48},
    )
    result = agent.run_sync(
        "Ana is 30 years old.", usage_limits=pydantic_ai.UsageLimits(request_limit=2)
    )
    assert isinstance(result.output, Person) and result.output.age == 30


# -- LangChain ------------------------------------------------------------------------------


@pytest.mark.parametrize("responses_api", [False, True], ids=["chat", "responses"])
def test_langchain_tool_then_answer(
    server: Any, calls: list[tuple[int, int]], responses_api: bool
) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        calls.append((a, b))
        return a + b

    llm = langchain_openai.ChatOpenAI(
        model=MODEL_ID,
        base_url=server.url + "/v1",
        api_key="unused",
        temperature=0,
        max_tokens=64,
        use_responses_api=responses_api,
        max_retries=0,
    )
    messages: list[Any] = [HumanMessage(QUESTION)]
    call = llm.bind_tools([add], tool_choice="add").invoke(messages)
    assert len(call.tool_calls) == 1, call
    no_markup(call.text if isinstance(call.text, str) else call.text())
    messages += [call, add.invoke(call.tool_calls[0])]
    answer = llm.with_structured_output(Answer, method="json_schema").invoke(messages)
    assert calls == [(A, B)]
    assert answer == Answer(result=A + B)


@pytest.mark.parametrize("responses_api", [False, True], ids=["chat", "responses"])
def test_langchain_structured_output(server: Any, responses_api: bool) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(
        model=MODEL_ID,
        base_url=server.url + "/v1",
        api_key="unused",
        temperature=0,
        max_tokens=48,
        use_responses_api=responses_api,
        max_retries=0,
    )
    person = llm.with_structured_output(Person, method="json_schema").invoke("Ana is 30 years old.")
    assert isinstance(person, Person) and person.age == 30


# -- instructor -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA"])
def test_instructor_structured_output(server: Any, mode: str) -> None:
    instructor = pytest.importorskip("instructor")
    from openai import OpenAI

    client = instructor.from_openai(
        OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0),
        mode=getattr(instructor.Mode, mode),
    )
    person = client.chat.completions.create(
        model=MODEL_ID,
        response_model=Person,
        messages=[{"role": "user", "content": "Ana is 30 years old."}],
        max_retries=1,
        temperature=0,
        max_tokens=64,
    )
    assert isinstance(person, Person) and person.age == 30


# -- LiteLLM --------------------------------------------------------------------------------


# LiteLLM's import defines a TypedDict pydantic warns about, and fetches a price list from
# GitHub unless told to use its bundled copy.
@pytest.mark.filterwarnings("ignore:Items? .* using the `ReadOnly` qualifier:UserWarning")
def test_litellm_tool_then_answer(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    endpoint = {"api_base": server.url + "/v1", "api_key": "unused", "temperature": 0}
    model = "openai/" + MODEL_ID
    tool = {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    first = litellm.completion(
        model=model,
        messages=messages,
        tools=[tool],
        tool_choice="required",
        max_tokens=64,
        **endpoint,
    )
    message = first.choices[0].message
    assert len(message.tool_calls) == 1
    no_markup(message.content)
    arguments = json.loads(message.tool_calls[0].function.arguments)
    assert (arguments["a"], arguments["b"]) == (A, B)
    messages += [
        message.model_dump(exclude_none=True),
        {
            "role": "tool",
            "tool_call_id": message.tool_calls[0].id,
            "content": str(arguments["a"] + arguments["b"]),
        },
    ]
    second = litellm.completion(
        model=model, messages=messages, response_format=Answer, max_tokens=32, **endpoint
    )
    assert Answer.model_validate_json(second.choices[0].message.content) == Answer(result=A + B)
