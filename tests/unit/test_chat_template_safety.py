"""Template failures and blow-ups become the client's 400, never a 500 or a hang."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pampero.chat import ChatTemplate
from pampero.errors import InvalidRequestError

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "templates"
USER = [{"role": "user", "content": "Hi"}]


def refusal(template: ChatTemplate, messages: list[dict[str, str]]) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        template.render(messages)
    return caught.value


def test_raise_exception_is_the_templates_own_400() -> None:
    mistral = ChatTemplate((TEMPLATES / "mistral.jinja").read_text(), bos_token="<s>")
    error = refusal(mistral, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert error.status_code == 400
    assert error.param == "messages"
    assert error.message == (
        "After the optional system message, conversation roles must alternate "
        "user/assistant/user/assistant/..."
    )


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("{{ messages[0].content.nope.deeper }}", "UndefinedError"),
        ("{{ messages[0].content + 1 }}", "TypeError"),
        ("{{ messages[0].content.index('zzz') }}", "ValueError"),
        ("{{ 1 / (messages | length - 1) }}", "ZeroDivisionError"),
    ],
)
def test_template_crash_is_a_clear_400(source: str, kind: str) -> None:
    error = refusal(ChatTemplate(source, model_id="m1"), USER)
    assert error.status_code == 400
    assert error.message.startswith(
        "The chat template of model m1 cannot render this conversation: "
    )
    assert kind in error.message
    assert "(template line 1)" in error.message


def test_template_line_is_reported() -> None:
    error = refusal(ChatTemplate("ok\n\n{{ messages[0].content + 1 }}"), USER)
    assert "(template line 3)" in error.message


def test_syntax_error_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="does not compile"):
        ChatTemplate("{% for m in messages %}")


def test_client_text_is_data_not_template_code() -> None:
    template = ChatTemplate("{% for m in messages %}[{{ m.content }}]{% endfor %}")
    content = "{{ 7*7 }} {% for x in range(3) %}x{% endfor %} {{ raise_exception('no') }}"
    assert template.render([{"role": "user", "content": content}]).text == f"[{content}]"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__base__ }}{{ ().__class__.__bases__[0].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.system('true') }}",
        "{{ messages.append(1) }}",
    ],
    ids=["mro", "bases", "globals", "mutation"],
)
def test_sandbox_escapes_fail_safe(source: str) -> None:
    assert refusal(ChatTemplate(source), USER).status_code == 400


def test_enormous_loop_stops_at_the_deadline() -> None:
    template = ChatTemplate(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        timeout=0.2,
    )
    started = time.monotonic()
    error = refusal(template, USER)
    assert "took longer than 0.2 s" in error.message
    assert time.monotonic() - started < 5  # 10^10 iterations would take hours


def test_nested_loops_over_client_data_stop_at_the_deadline() -> None:
    template = ChatTemplate(
        "{% for a in messages %}{% for b in messages %}{% for c in messages %}"
        "{% if c.role == 'x' %}{% endif %}{% endfor %}{% endfor %}{% endfor %}",
        timeout=0.2,
    )
    messages = [{"role": "user", "content": "x"}] * 2000
    assert "took longer" in refusal(template, messages).message


def test_output_cap_stops_an_amplifying_template_on_huge_input() -> None:
    template = ChatTemplate(
        "{% for a in messages %}{% for b in messages %}{{ b.content }}{% endfor %}{% endfor %}"
    )
    messages = [{"role": "user", "content": "x" * 100}] * 1000  # 100 MB if rendered
    error = refusal(template, messages)
    assert error.message == f"The rendered prompt would exceed {8 * 1024 * 1024} characters."


def test_output_cap_on_a_huge_message() -> None:
    qwen = ChatTemplate((TEMPLATES / "qwen2.5.jinja").read_text(), max_output_chars=10_000)
    assert "exceed 10000" in refusal(qwen, [{"role": "user", "content": "x" * 10_001}]).message


@pytest.mark.parametrize(
    "source",
    [
        "{{ messages[0].content * 1000000000 }}",
        "{{ [messages[0]] * 1000000000 }}",
        "{{ messages[1].content.replace('a', messages[0].content) }}",
        "{{ 7 ** 100000000 }}",
    ],
    ids=["string-repeat", "list-repeat", "replace", "power"],
)
def test_blow_ups_are_refused_before_they_are_built(source: str) -> None:
    template = ChatTemplate(source, max_output_chars=1_000_000)
    messages = [
        {"role": "user", "content": "y" * 10_000},
        {"role": "user", "content": "a" * 10_000},
    ]
    assert refusal(template, messages).status_code == 400


def test_small_repeats_and_ranges_still_work() -> None:
    template = ChatTemplate(
        "{{ '=' * 3 }}{{ range(3) | list | join(',') }}|{{ range(5) | length }}"
        "|{{ range(4)[1] }}|{{ range(4) | reverse | join('') }}|{{ 2 ** 10 }}"
    )
    assert template.render(USER).text == "===0,1,2|5|1|3210|1024"


def test_hf_extras() -> None:
    template = ChatTemplate(
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
        "{% generation %}{{ m | tojson(indent=1, sort_keys=True) }}{% endgeneration %}"
        "{% endfor %}|{{ strftime_now('%Y') | length }}|{{ {'k': '<é>'} | tojson }}"
    )
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    text = template.render(messages).text
    assert text == '{\n "content": "a",\n "role": "user"\n}|4|{"k": "<é>"}'
