"""What the end-to-end tests share: starting ``pampero serve``, an HTTP client whose every
answer is checked against OpenAI's spec, and running documented snippets (``run_snippets``).

``Api`` checks responses with ``tests/spec/validate.py``, allowing exactly the extra fields
pampero is meant to add (vLLM's ``reasoning_content``/``reasoning``, ``stop_reason``,
``prompt_logprobs`` and the model card's context length and capabilities); any other extra
field fails.

Servers get the caller's environment minus other ``PAMPERO_*`` variables (``PAMPERO_HOME`` is
kept), so a developer's shell cannot change what the tests see.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e import sse
from tests.spec.validate import validate_against

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "default.yaml"
MODEL_ID = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
STARTUP_TIMEOUT = 120.0

# What pampero adds to OpenAI's objects, and nothing more (vLLM's extra fields; "reasoning" is
# vLLM's newer name for "reasoning_content", and both are sent).
CHAT_EXTRAS = frozenset({"reasoning_content", "reasoning", "stop_reason", "prompt_logprobs"})
CHUNK_EXTRAS = frozenset({"reasoning_content", "reasoning", "stop_reason"})
COMPLETION_EXTRAS = frozenset({"stop_reason", "prompt_logprobs"})
MODEL_EXTRAS = frozenset({"root", "parent", "max_model_len", "context_length", "capabilities"})
# A gateway's answers also name the provider that answered (OpenRouter's field), and a priced
# provider's usage carries its cost.
GATEWAY_CHAT_EXTRAS = CHAT_EXTRAS | {"provider", "cost"}
GATEWAY_CHUNK_EXTRAS = CHUNK_EXTRAS | {"provider", "cost"}


def serve_command(*flags: str) -> list[str]:
    # A test environment without the server's extras (a venv holding only the agent
    # frameworks) can run the servers on another interpreter.
    python = os.environ.get("PAMPERO_TEST_SERVER_PYTHON", sys.executable)
    return [python, "-m", "pampero", "serve", "--config", str(CONFIG), *flags]


def run_to_exit(
    argv: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command (a server that must refuse to start) to its end: exit code and output."""
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Metrics:
    """One scrape of ``/metrics``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, sample: str, **labels: str) -> float:
        """Sum of the samples named ``sample`` whose labels include ``labels``."""
        return sum(
            s.value
            for family in self.families.values()
            for s in family.samples
            if s.name == sample and labels.items() <= s.labels.items()
        )


class Api:
    """HTTP calls against one server, each answer checked against OpenAI's spec.

    Chat and completion bodies default to the default model, ``max_tokens: 8`` and
    ``temperature: 0``; any field given overrides them (``max_tokens=None`` sends null).
    """

    def __init__(self, url: str, *, key: str | None = None, model: str = MODEL_ID) -> None:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url, timeout=180, headers=headers)
        self.model = model

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: dict[str, Any] | bytes, **kwargs: Any) -> httpx.Response:
        if isinstance(body, bytes):
            return self.http.post(path, content=body, **kwargs)
        return self.http.post(path, json=body, **kwargs)

    def chat_body(self, content: str | None, fields: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": 8, "temperature": 0}
        if content is not None:
            body["messages"] = [{"role": "user", "content": content}]
        body.update(fields)
        return body

    def completion_body(self, prompt: Any, fields: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": 8, "temperature": 0}
        body["prompt"] = prompt
        body.update(fields)
        return body

    def chat_response(self, content: str | None = None, **fields: Any) -> httpx.Response:
        response = self.post("/v1/chat/completions", self.chat_body(content, fields))
        assert response.status_code == 200, response.text
        check_chat(response.json())
        return response

    def chat(self, content: str | None = None, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.chat_response(content, **fields).json()
        return body

    def complete(self, prompt: Any, **fields: Any) -> dict[str, Any]:
        response = self.post("/v1/completions", self.completion_body(prompt, fields))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        check_completion(body)
        return body

    def stream_chat(self, content: str | None = None, **fields: Any) -> sse.StreamResult:
        body = self.chat_body(content, {"stream": True, **fields})
        events = self._stream("/v1/chat/completions", body)
        for event in events:
            validate_against("CreateChatCompletionStreamResponse", event, allow_extra=CHUNK_EXTRAS)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return sse.chat_stream(events, n=body.get("n", 1), include_usage=include_usage)

    def stream_complete(self, prompt: Any, **fields: Any) -> sse.StreamResult:
        body = self.completion_body(prompt, {"stream": True, **fields})
        events = self._stream("/v1/completions", body)
        for event in events:
            check_completion_chunk(event)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        batch = len(prompt) if isinstance(prompt, list) and not isinstance(prompt[0], int) else 1
        n = body.get("n", 1) * batch
        return sse.completion_stream(events, n=n, include_usage=include_usage)

    def _stream(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        stream = sse.read(self.http, path, body)
        assert stream.status == 200, stream.raw[:1000]
        assert stream.headers["content-type"].startswith("text/event-stream")
        return stream.events

    def error(self, path: str, body: dict[str, Any] | bytes, status: int) -> dict[str, Any]:
        """POST ``body``, expect an OpenAI error body with ``status``; return its ``error``."""
        return check_error(self.post(path, body), status)

    def tokenize(self, **body: Any) -> dict[str, Any]:
        response = self.post("/tokenize", body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def detokenize(self, tokens: list[int]) -> str:
        response = self.post("/detokenize", {"model": self.model, "tokens": tokens})
        assert response.status_code == 200, response.text
        text: str = response.json()["prompt"]
        return text

    def metrics(self) -> Metrics:
        response = self.http.get("/metrics")
        assert response.status_code == 200, response.text
        return Metrics(response.text)

    def running(self) -> float:
        return self.metrics().value("pampero_requests_running", model=MODEL_ID)

    def wait_running(self, predicate: Callable[[float], bool], timeout: float) -> float:
        """Poll ``pampero_requests_running`` until ``predicate`` holds; return the last value."""
        deadline = time.monotonic() + timeout
        value = self.running()
        while not predicate(value) and time.monotonic() < deadline:
            time.sleep(0.05)
            value = self.running()
        return value


def check_chat(body: dict[str, Any]) -> None:
    validate_against("CreateChatCompletionResponse", body, allow_extra=CHAT_EXTRAS)
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def check_completion(body: dict[str, Any]) -> None:
    """Validate a /v1/completions body. With ``echo`` the first prompt token has no logprob
    (it has no context), which OpenAI reports as null although its spec says number."""
    shown = copy.deepcopy(body)
    for choice in shown["choices"]:
        logprobs = choice["logprobs"]
        if logprobs and logprobs["token_logprobs"] and logprobs["token_logprobs"][0] is None:
            assert logprobs["top_logprobs"][0] is None
            logprobs["token_logprobs"][0], logprobs["top_logprobs"][0] = 0.0, {}
    validate_against("CreateCompletionResponse", shown, allow_extra=COMPLETION_EXTRAS)


def check_completion_chunk(chunk: dict[str, Any]) -> None:
    """Validate a streamed /v1/completions chunk. The spec has no chunk schema for legacy
    completions; OpenAI's own chunks carry ``finish_reason: null`` until the last one and
    ``usage: null`` (with include_usage) until the final chunk, which the spec calls errors."""
    shown = copy.deepcopy(chunk)
    if shown.get("usage", {}) is None:
        del shown["usage"]
    for choice in shown["choices"]:
        if choice["finish_reason"] is None:
            choice["finish_reason"] = "stop"
    validate_against("CreateCompletionResponse", shown, allow_extra=CHUNK_EXTRAS)


def check_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """``response`` is OpenAI's error shape with ``status`` (never FastAPI's 422 detail)."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    validate_against("ErrorResponse", body, allow_extra=set())
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    return error


class Server:
    """A running ``pampero serve`` process."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, *, key: str | None = None, model: str = MODEL_ID) -> Api:
        return Api(self.url, key=key, model=model)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


Launcher = Callable[..., AbstractContextManager[Server]]
"""The ``launch`` fixture: ``with launch("--strict-params", env={...}, host=...) as server``."""


def pampero_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAMPERO_")}
    if "PAMPERO_HOME" in os.environ:
        env["PAMPERO_HOME"] = os.environ["PAMPERO_HOME"]
    return env


SERVER_LOGS: list[tuple[Path, tuple[str, ...]]] = []
"""Every server this session started: its log and the API keys it was given. Servers run at
debug level unless a test chooses a level, and ``secrets_in_logs`` reads them all at the end of
the session (issue 15: the whole matrix at debug level, then no key, ``Authorization`` value or
base64 payload in the logs)."""

_BEARER = re.compile(r"bearer\s+(?!<key>)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{120,}={0,2}")


def secrets_in_logs() -> list[str]:
    """Where a server's log shows a key it was given, a bearer token or a base64 run."""
    found: list[str] = []
    for path, keys in SERVER_LOGS:
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            leaks = [key for key in keys if len(key) >= 8 and key in line]
            leaks += _BEARER.findall(line) + _BASE64_RUN.findall(line)
            found += [f"{path.name}:{number}: {leak[:40]}..." for leak in leaks]
    return found


def start_server(
    flags: tuple[str, ...], *, env: dict[str, str], log_dir: Path, host: str = "127.0.0.1"
) -> Server:
    """Start ``pampero serve`` and wait for ``/health``; fail the test with its log if not."""
    if "--log-level" not in flags:
        flags = (*flags, "--log-level", "debug")
    keys = tuple(value for flag, value in itertools.pairwise(flags) if flag == "--api-key")
    for _attempt in range(3):  # another process may take the free port before the server
        port = free_port()
        log_path = log_dir / f"server-{port}.log"
        SERVER_LOGS.append((log_path, keys))
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                serve_command("--host", host, "--port", str(port), *flags),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )
        server = Server(process, f"http://127.0.0.1:{port}", log_path)
        if _wait_healthy(server):
            return server
        server.stop()
        if "address already in use" not in server.log():
            break
    pytest.fail(
        f"pampero serve {' '.join(flags)} did not become healthy within {STARTUP_TIMEOUT:.0f} s"
        f"; its log:\n{server.log()[-6000:]}",
        pytrace=False,
    )


def _wait_healthy(server: Server) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


# How a documented snippet runs: python -c, node -e, or bash -c for the curl commands.
SNIPPET_RUNNERS = {"python": [sys.executable, "-c"], "node": ["node", "-e"], "curl": ["bash", "-c"]}
_SNIPPET_NEEDS = {"python": sys.executable, "node": "node", "curl": "curl"}


@dataclass
class SnippetRun:
    stdout: str
    stderr: str
    returncode: int

    def ok(self) -> str:
        assert self.returncode == 0, f"exit {self.returncode}\n{self.stderr[-3000:]}"
        return self.stdout


def run_snippets(
    snippets: Mapping[str, tuple[str, str]],
    replacements: Mapping[str, str],
    env: Mapping[str, str],
) -> dict[str, SnippetRun | None]:
    """Run every ``name -> (runner, code)`` snippet at once (one batch for the server), each
    with ``replacements`` applied to its text; None for a snippet whose runner is missing."""
    environment = {**env, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def run(item: tuple[str, tuple[str, str]]) -> tuple[str, SnippetRun | None]:
        name, (kind, code) = item
        if shutil.which(_SNIPPET_NEEDS[kind]) is None:
            return name, None
        for old, new in replacements.items():
            code = code.replace(old, new)
        done = subprocess.run(
            [*SNIPPET_RUNNERS[kind], code],
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        return name, SnippetRun(done.stdout, done.stderr, done.returncode)

    with ThreadPoolExecutor(max_workers=len(snippets)) as pool:
        return dict(pool.map(run, snippets.items()))
