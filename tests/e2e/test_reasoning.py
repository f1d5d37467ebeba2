"""Reasoning parsed end to end: the default model behind a chat template that thinks.

The template below is ChatML that opens ``<think>`` in the generation prompt (or, with
``enable_thinking: false``, closes an empty think block there), as Qwen3's does. Left alone,
the 0.5B model writes one thought and ends its turn without ``</think>``; with its end tokens
banned by ``logit_bias`` it closes the thought and goes on to answer, which is what a reasoning
model does. ``logprobs`` give back the raw text, so each split can be checked against it.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
TEMPLATE = """\
{%- for message in messages %}
{{- '<|im_start|>' + message.role + '\\n' }}
{%- if message.role == 'assistant' and message.reasoning_content %}
{{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' }}
{%- endif %}
{{- message.content or '' }}
{%- if not (loop.last and message.role == 'assistant') %}{{- '<|im_end|>\\n' }}{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}
{{- '<think>\\n\\n</think>\\n\\n' }}
{%- else %}
{{- '<think>\\n' }}
{%- endif %}
{%- endif %}
"""
QUESTION = "What is 2+2?"
IM_END, END_OF_TEXT = 151645, 151643  # Qwen2.5's end-of-turn and end-of-text tokens
NO_END = {str(IM_END): -100, str(END_OF_TEXT): -100}
ANSWERING = {"max_tokens": 24, "logit_bias": NO_END}
TAGS = ("<think>", "</think>")


@pytest.fixture(scope="module")
def api(launch, tmp_path_factory):
    """A server whose model thinks; no prefix cache, so streamed and whole answers match."""
    folder = tmp_path_factory.mktemp("thinking")
    (folder / "think.jinja").write_text(TEMPLATE)
    (folder / "config.yaml").write_text(
        "models:\n"
        "  - id: Qwen/Qwen2.5-Coder-0.5B-Instruct\n"
        "    path: default\n"
        f"    chat_template: {folder / 'think.jinja'}\n"
        "    reasoning_parser: think\n"
        "    tool_parser: hermes\n"
    )
    with launch("--config", str(folder / "config.yaml"), "--no-prefix-cache") as s:
        client = s.api()
        yield client
        client.close()


def message(body):
    return body["choices"][0]["message"]


def raw_text(body):
    """What the model wrote, tags included, from the logprobs' tokens."""
    return "".join(entry["token"] for entry in body["choices"][0]["logprobs"]["content"])


def no_tags(text):
    assert text is None or not any(tag in text for tag in TAGS), text


def test_reasoning_and_content_are_split_at_the_closing_tag(api):
    body = api.chat(QUESTION, logprobs=True, **ANSWERING)
    raw = raw_text(body)
    assert "</think>" in raw, raw  # the model closed its thought
    thought, _, answer = raw.partition("</think>")
    got = message(body)
    assert got["reasoning_content"] == got["reasoning"] == thought.strip()
    assert got["content"] == answer.lstrip()
    assert got["reasoning_content"] and got["content"]
    no_tags(got["content"])
    no_tags(got["reasoning_content"])
    details = body["usage"]["completion_tokens_details"]
    assert 0 < details["reasoning_tokens"] < body["usage"]["completion_tokens"]


def test_streamed_deltas_carry_the_reasoning(api):
    whole = message(api.chat(QUESTION, **ANSWERING))
    streamed = api.stream_chat(QUESTION, **ANSWERING)
    choice = streamed.choices[0]
    assert choice.reasoning == whole["reasoning_content"]
    assert choice.text == whole["content"]
    deltas = [e["choices"][0]["delta"] for e in streamed.events if e["choices"]]
    thinking = [d for d in deltas if "reasoning_content" in d]
    assert len(thinking) > 1, "the reasoning should arrive in several deltas"
    for delta in deltas:
        assert delta.get("reasoning") == delta.get("reasoning_content"), delta
        no_tags(delta.get("content"))
        no_tags(delta.get("reasoning_content"))
    # reasoning first, then content: once content started, no reasoning follows
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all("reasoning_content" not in d for d in deltas[first_content:])


@pytest.mark.parametrize("max_tokens", [2, 5])
def test_a_thought_cut_off_is_all_reasoning(api, max_tokens):
    body = api.chat(QUESTION, logprobs=True, max_tokens=max_tokens)
    assert body["choices"][0]["finish_reason"] == "length"
    raw = raw_text(body)
    assert "</think>" not in raw
    got = message(body)
    assert got["reasoning_content"] == got["reasoning"] == raw.strip()
    assert not got["content"]
    streamed = api.stream_chat(QUESTION, max_tokens=max_tokens)
    assert streamed.choices[0].reasoning == raw.strip()
    assert streamed.texts() == [""]


def test_include_reasoning_false_drops_it(api):
    shown = message(api.chat(QUESTION, **ANSWERING))
    hidden = message(api.chat(QUESTION, include_reasoning=False, **ANSWERING))
    assert hidden["reasoning_content"] is None and hidden["reasoning"] is None
    assert hidden["content"] == shown["content"]  # dropped, never moved into the content
    streamed = api.stream_chat(QUESTION, include_reasoning=False, **ANSWERING)
    assert streamed.choices[0].reasoning == ""
    assert all("reasoning" not in e["choices"][0]["delta"] for e in streamed.events)
    assert streamed.texts() == [shown["content"]]


NOT_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}


def test_enable_thinking_false(api):
    rendered = api.tokenize(messages=[{"role": "user", "content": QUESTION}], **NOT_THINKING)
    assert api.detokenize(rendered["tokens"]).endswith("<think>\n\n</think>\n\n")
    body = api.chat(QUESTION, logprobs=True, **NOT_THINKING, **ANSWERING)
    got = message(body)
    assert got["reasoning_content"] is None and got["reasoning"] is None
    assert got["content"] == raw_text(body)  # all of it content, untouched
    # The template closed the reasoning, so a constraint binds the answer from its start.
    choice = api.chat(QUESTION, guided_choice=["4", "5"], **NOT_THINKING)
    assert message(choice)["content"] in ("4", "5")
    assert message(choice)["reasoning_content"] is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"guided_choice": ["4", "5"]}, "guided_choice"),
        ({"guided_regex": "[0-9]+"}, "guided_regex"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"structured_outputs": {"choice": ["4", "5"]}}, "structured_outputs.choice"),
    ],
)
def test_a_constraint_after_a_multi_token_close_is_refused(api, fields, param):
    # A constraint must wait for </think> to bind the answer, not the thought; Qwen2.5 writes
    # </think> in three tokens, which pampero cannot wait for: a 400, never a silent ignore.
    assert api.tokenize(prompt="</think>")["count"] > 1
    error = api.error(CHAT, api.chat_body(QUESTION, fields), 400)
    assert error["param"] == param, error
    assert error["code"] == "unsupported_parameter"
    assert "</think>" in error["message"]


def test_a_forced_tool_call_while_thinking_is_refused(api):
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    body = api.chat_body(QUESTION, {"tools": [tool], "tool_choice": "required"})
    error = api.error(CHAT, body, 400)
    assert error["param"] == "tool_choice", error
    assert "</think>" in error["message"]


def continued(prefix, **fields):
    messages = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": prefix}]
    return {
        "messages": messages,
        "continue_final_message": True,
        "add_generation_prompt": False,
        "logprobs": True,
        **ANSWERING,
        **fields,
    }


@pytest.mark.parametrize("prefix", ["<think>\n", "<think>\nThe user asks for a sum."])
def test_continue_final_message_inside_the_reasoning(api, prefix):
    # The assistant's own opening of the reasoning, continued: the output starts inside it
    # whether the prefix stops right after <think> or part-way through a thought.
    body = api.chat(**continued(prefix))
    raw = raw_text(body)
    assert "</think>" in raw, raw
    thought, _, answer = raw.partition("</think>")
    got = message(body)
    assert got["reasoning_content"] == got["reasoning"] == thought.strip()
    assert got["content"] == answer.lstrip()
    no_tags(got["content"])
    streamed = api.stream_chat(**continued(prefix))
    assert streamed.choices[0].reasoning == got["reasoning_content"]
    assert streamed.texts() == [got["content"]]


def test_continue_final_message_after_the_reasoning(api):
    # A final message that already closed its thought is continued as the answer.
    body = api.chat(**continued("<think>\nA sum.\n</think>\n\nThe answer"))
    got = message(body)
    assert got["reasoning_content"] is None
    assert got["content"] == raw_text(body)
    no_tags(got["content"])
