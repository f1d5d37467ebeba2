"""The playground page in a real browser against a real ``pampero serve``.

One server for the module, started with ``--api-key``, serves the default model and the tiny
vision-language model (``pampero.dev.tiny_vlm``), so the page can switch between a text model
and a vision one. Each test opens the page in a fresh browser context (fresh local storage),
drives it as a person would (typing, clicking, choosing files, dropping them), checks what the
page shows against what the server says, and saves a screenshot of each state reached.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image

from tests.browser.tab import Playground, curl_body, tabs
from tests.e2e.harness import MODEL_ID, Api, Launcher, Server, run_snippets

KEY = "sk-playground-test"
VISION = "tiny-vlm"


@pytest.fixture(scope="module")
def server(launch: Launcher) -> Iterator[Server]:
    pytest.importorskip("torch", reason="the tiny vision model is built with torch")
    from pampero.dev.tiny_vlm import cached_tiny_vlm
    from pampero.settings import default_home

    home = Path(os.environ["PAMPERO_HOME"]) if os.environ.get("PAMPERO_HOME") else default_home()
    vlm = cached_tiny_vlm(home)
    flags = (
        "--api-key", KEY,
        "--model", "default",
        "--model", f"{VISION}={vlm.model_gguf}", "--mmproj", str(vlm.mmproj_gguf),
    )  # fmt: skip
    with launch(*flags) as running:
        yield running


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[Api]:
    client = server.api(key=KEY)
    yield client
    client.close()


@pytest.fixture
def playground(
    chromium: Any, server: Server, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Playground]]:
    with tabs(chromium, server.url, artifacts, request.node.name, KEY) as open_tab:
        yield open_tab


def png(colour: tuple[int, int, int], size: int = 32) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


def test_a_missing_key_is_asked_for_and_kept_in_local_storage_only(playground, api) -> None:
    tab = playground(key=None)
    page = tab.page
    page.wait_for_selector("#key-dialog[open]")
    assert "needs an API key" in page.inner_text("#key-reason")
    assert "401" in tab.error() and "API key" in tab.error()
    tab.shot("asks-for-key")
    page.fill("#key-input", "sk-wrong")
    page.click("#key-save")
    page.wait_for_selector("#key-dialog[open]")
    page.wait_for_function("document.querySelector('#key-reason').textContent.includes('refused')")
    tab.shot("wrong-key")
    page.fill("#key-input", KEY)
    page.click("#key-save")
    tab.ready()
    served = {model["id"] for model in api.http.get("/v1/models").json()["data"]}
    shown = set(page.eval_on_selector("#model", "s => [...s.options].map(o => o.value)"))
    assert shown == served
    assert page.evaluate("localStorage.getItem('pampero.apiKey')") == KEY
    assert KEY not in page.url
    assert page.is_hidden("#error")
    tab.shot("key-accepted")


def test_stream_an_answer_and_stop_it(playground, api) -> None:
    tab = playground()
    tab.set(max_tokens=400, temperature=0)
    tab.send("Write the numbers from 1 to 300, one per line, and nothing else.")
    page = tab.page
    page.wait_for_selector("#stop:not([disabled])")
    page.wait_for_function(
        "(document.querySelector('.message.assistant .content')?.textContent || '').length > 12"
    )
    tab.shot("streaming")
    page.click("#stop")
    tab.wait_answer()
    stopped = tab.answers()[-1]
    assert page.inner_text(".message.assistant .finish") == "stopped"
    assert tab.stat("finish") == "stopped"
    assert 12 <= len(stopped) < 1000
    # The server dropped the request: nothing runs, and the text stays as it was.
    assert api.wait_running(lambda running: running == 0, timeout=30) == 0
    page.wait_for_timeout(500)
    assert tab.answers()[-1] == stopped
    tab.shot("stopped")


def test_answers_show_usage_timing_and_the_exact_request_as_code(playground, api) -> None:
    tab = playground()
    tab.page.fill("#system", "You answer in one short sentence.")
    tab.set(max_tokens=12, temperature=0, top_k=20, repetition_penalty=1.1, seed=7)
    tab.send("Say hello.")
    tab.wait_answer()
    tab.send("Now say goodbye.")
    tab.wait_answer()
    first, second = tab.answers()
    assert first.strip() and second.strip()
    # The second request carried the whole conversation, as the copied code shows.
    python_code = tab.snippet("python")
    curl_code = tab.snippet("curl")
    body = curl_body(curl_code)
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][2]["content"] == first
    assert (body["top_k"], body["repetition_penalty"], body["seed"]) == (20, 1.1, 7)
    # The figures are the server's: prompt tokens are the tokenizer's count of that prompt.
    expected_in = api.tokenize(model=MODEL_ID, messages=body["messages"])["count"]
    assert int(tab.stat("in")) == expected_in
    assert 1 <= int(tab.stat("out")) <= 12
    assert int(tab.stat("cached")) >= 0
    assert re.fullmatch(r"\d+ ms", tab.stat("ttft"))
    assert float(tab.stat("rate")) > 0
    assert tab.stat("provider") == "local"
    tab.shot("usage-and-timing")
    # The copied code runs: the same request, answered by the server.
    js_code = tab.snippet("js")
    tab.shot("copy-as-code")
    runs = run_snippets(
        {"curl": ("curl", curl_code), "python": ("python", python_code), "js": ("node", js_code)},
        {},
        {**os.environ, "PAMPERO_API_KEY": KEY},
    )
    for name, run in runs.items():
        if run is None:
            continue  # node or curl missing on this machine
        output = run.ok()
        assert output.strip(), name
        if name == "curl":
            assert "data: [DONE]" in output


def test_a_json_schema_is_edited_checked_and_forces_valid_json(playground) -> None:
    tab = playground()
    page = tab.page
    page.click("summary:has-text('Output constraint')")
    page.select_option("#constraint-kind", "json_schema")
    page.fill("#constraint-text", '{"type": "object", "properties": ')
    assert "Invalid JSON" in page.inner_text("#constraint-error")
    assert page.get_attribute("#constraint-text", "aria-invalid") == "true"
    tab.send("Is the sky blue?")
    assert "Fix the highlighted editor" in tab.error()
    assert tab.answers() == []
    tab.shot("invalid-schema")
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    page.click("summary:has-text('Tools')")  # the tools editor checks its JSON the same way
    page.fill("#tools-text", '[{"type": "function", "function": {}}]')
    assert "Tool 0: expected" in page.inner_text("#tools-error")
    page.fill("#tools-text", "")
    assert page.inner_text("#tools-error") == ""
    page.fill("#constraint-text", json.dumps(schema))
    assert page.inner_text("#constraint-error") == ""
    tab.set(max_tokens=40, temperature=0)
    tab.send('Is the sky blue? Reply with {"answer": "yes"} or {"answer": "no"}.')
    tab.wait_answer()
    text = tab.answers()[-1]
    assert tab.stat("finish") == "stop", text
    answer = json.loads(text)
    jsonschema.validate(answer, schema)
    tab.shot("valid-json")


def test_switch_to_the_vision_model_and_ask_about_an_image(playground, api, tmp_path) -> None:
    tab = playground()
    page = tab.page
    page.select_option("#model", MODEL_ID)
    assert page.is_disabled("#attach")
    assert "no vision" in page.inner_text("#model-caps")
    tab.shot("text-model")
    page.select_option("#model", VISION)
    assert page.is_enabled("#attach")
    assert "vision" in page.inner_text("#model-caps").replace("no vision", "")
    # Attach one picture with the file picker and another by dropping it.
    picture = tmp_path / "red.png"
    picture.write_bytes(png((220, 30, 30)))
    page.set_input_files("#attach", str(picture))
    page.evaluate(
        """async (bytes) => {
            const file = new File([new Uint8Array(bytes)], "blue.png", {type: "image/png"});
            const data = new DataTransfer();
            data.items.add(file);
            document.querySelector("#drop").dispatchEvent(
                new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
        }""",
        list(png((30, 30, 220))),
    )
    page.evaluate(  # and a third pasted into the message box
        """async (bytes) => {
            const file = new File([new Uint8Array(bytes)], "green.png", {type: "image/png"});
            const data = new DataTransfer();
            data.items.add(file);
            const paste = new ClipboardEvent("paste", {clipboardData: data, bubbles: true});
            document.querySelector("#prompt").dispatchEvent(paste);
        }""",
        list(png((30, 200, 30))),
    )
    page.wait_for_function("document.querySelectorAll('#attachments img').length === 3")
    tab.shot("images-attached")
    tab.set(max_tokens=6, temperature=0)
    tab.send("What is in these pictures?")
    tab.wait_answer()
    assert tab.answers()[-1]  # a random model's words: only that there are some
    assert int(tab.stat("out")) == 6
    assert page.locator(".message.user img").count() == 3
    body = curl_body(tab.snippet("curl"))
    assert body["model"] == VISION
    parts = body["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url", "image_url"]
    assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts[1:])
    text_only = api.tokenize(model=VISION, messages=[{"role": "user", "content": parts[0]["text"]}])
    assert int(tab.stat("in")) > text_only["count"]  # the images were counted
    tab.shot("vision-answer")


def test_a_400_is_shown_with_the_servers_message(playground) -> None:
    tab = playground()
    tab.set(max_tokens=100000)
    tab.send("Hello")
    message = tab.error()
    assert message.startswith("400: This model's maximum context length is")
    assert "(param: max_tokens)" in message
    # Nothing was added to the conversation; the message is back in the box to fix and resend.
    assert tab.answers() == []
    assert tab.page.input_value("#prompt") == "Hello"
    tab.shot("error-400")


def test_the_usage_view_says_when_accounts_are_not_enabled(playground, api) -> None:
    assert api.http.get("/v1/key").status_code == 404  # this server has no accounts
    tab = playground()
    tab.page.click("#tab-usage")
    tab.page.wait_for_selector("#usage-disabled")
    assert "Accounts are not enabled on this server" in tab.page.inner_text("#usage-disabled")
    assert tab.page.is_hidden("#usage-chart-box") and tab.page.is_hidden("#view-chat")
    tab.shot("accounts-disabled")


USAGE_ROWS = [
    {"date": "2026-11-01", "model": "gpt-4o", "key": "sk-a…", "requests": 3,
     "prompt_tokens": 300, "completion_tokens": 90, "cached_tokens": 10, "cost": 0.02},
    {"date": "2026-11-01", "model": "tiny-vlm", "key": "sk-b…", "requests": 1,
     "prompt_tokens": 50, "completion_tokens": 5, "cached_tokens": 0, "cost": 0.0},
    {"date": "2026-11-02", "model": "gpt-4o", "key": "sk-a…", "requests": 5,
     "prompt_tokens": 500, "completion_tokens": 150, "cached_tokens": 40, "cost": 0.06},
    {"date": "2026-11-04", "model": "qwen", "key": "sk-a…", "requests": 2,
     "prompt_tokens": 20, "completion_tokens": 20, "cached_tokens": 0, "cost": 0.01},
]  # fmt: skip


def test_the_usage_chart_and_table_from_usage_rows(playground) -> None:
    """The page's own rendering of ``/v1/usage`` rows (the shape agreed with the accounts
    work), called in the served page; the endpoints themselves are not on this server."""
    tab = playground()
    page = tab.page
    page.click("#tab-usage")
    page.wait_for_selector("#usage-disabled")
    page.evaluate(
        "async (rows) => (await import('/static/playground/usage.js')).renderUsage(rows)",
        USAGE_ROWS,
    )
    bars = page.eval_on_selector_all(
        "#usage-chart rect.bar-rect",
        "bars => bars.map(b => [b.dataset.date, +b.dataset.cost, +b.getAttribute('height')])",
    )
    assert [(d, round(c, 4)) for d, c, _ in bars] == [
        ("2026-11-01", 0.02),
        ("2026-11-02", 0.06),
        ("2026-11-03", 0.0),  # a day without usage is a day of the axis
        ("2026-11-04", 0.01),
    ]
    heights = [h for _, _, h in bars]
    assert heights[1] == max(heights) and heights[0] == pytest.approx(heights[1] / 3, rel=0.02)
    assert heights[2] == 0
    assert page.is_hidden("#view-chat")
    rows = page.eval_on_selector_all(
        "#usage-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert rows[0] == ["gpt-4o", "8", "800", "240", "50", "$0.08"]
    assert [r[0] for r in rows] == ["gpt-4o", "qwen", "tiny-vlm"]
    assert page.is_visible("#usage-key-filter-label")  # rows name keys: an admin's view
    summary = {  # GET /v1/key's data, as the accounts work answers it (OpenRouter's shape)
        "label": "team-a", "usage": 0.09, "limit": 5.0, "limit_remaining": 4.91,
        "limit_reset": "monthly", "is_free_tier": False,
        "rate_limit": {"requests": 60, "tokens": None, "parallel": 4, "interval": "60s"},
    }  # fmt: skip
    page.evaluate(
        "async (data) => (await import('/static/playground/usage.js')).renderKey(data)", summary
    )
    limits = page.eval_on_selector_all(
        "#usage-key-list dd", "items => items.map(i => i.textContent)"
    )
    assert limits == [
        "team-a",
        "$0.09",
        "$5.00",
        "$4.91",
        "monthly",
        "60 requests per 60s, 4 at a time",
    ]
    tab.shot("usage-chart")


def test_keyboard_labels_and_a_phone_sized_screen(playground) -> None:
    tab = playground(width=390, height=844)
    page = tab.page
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                    && !(e.textContent || '').trim())
            .map(e => e.id || e.outerHTML)"""
    )
    assert unlabelled == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    tab.shot("phone")
    tab.set(max_tokens=4, temperature=0)
    page.focus("#prompt")
    page.keyboard.type("Hi")
    page.keyboard.press("Control+Enter")  # sends without the mouse
    tab.wait_answer()
    assert len(tab.answers()) == 1
    tab.shot("phone-answer")


def test_the_api_docs_render_offline_from_the_servers_document(playground, api) -> None:
    tab = playground()  # the playground's key is offered to Swagger UI's "Authorize"
    page = tab.page
    page.goto(tab.url + "/docs")
    page.wait_for_selector(".opblock")
    operations = sum(len(item) for item in api.http.get("/openapi.json").json()["paths"].values())
    assert page.locator(".opblock").count() == operations
    assert "pampero" in page.inner_text(".info .title")
    tab.shot("api-docs")
