"""SIGTERM with requests in flight: they finish (within ``--drain-timeout``), new requests get a
503 with ``Retry-After`` in OpenAI's error shape, and the process exits 0. Past the deadline,
what still runs ends with an error in OpenAI's shape (in band for a stream), never a dropped
connection or a plain-text 500."""

from __future__ import annotations

import signal
import threading
from contextlib import closing
from typing import Any

import httpx
import pytest

from tests.e2e import sse
from tests.e2e.harness import check_error

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
EXIT_WITHIN = 60.0


class InFlight(threading.Thread):
    """One request sent from another thread; keeps its response (or error)."""

    def __init__(self, server, body: dict[str, Any]) -> None:
        super().__init__()
        self.server, self.body = server, body
        self.status: int | None = None
        self.raw = b""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.server.url, timeout=120) as client,
                client.stream("POST", CHAT, json=self.body) as response,
            ):
                self.status = response.status_code
                self.raw = response.read()
        except BaseException as exc:  # the test reads it
            self.error = exc

    def result(self) -> tuple[int | None, bytes]:
        self.join(timeout=120)
        assert not self.is_alive()
        assert self.error is None, repr(self.error)
        return self.status, self.raw


def body(api, max_tokens, **fields):
    return api.chat_body(
        "Count from 1 to 1000.", {"max_tokens": max_tokens, "ignore_eos": True, **fields}
    )


def exit_code(server) -> int:
    return server.process.wait(timeout=EXIT_WITHIN)


def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(launch):
    with launch("--drain-timeout", "120") as server, closing(server.api()) as api:
        streamed = InFlight(server, body(api, 40, stream=True))
        plain = InFlight(server, body(api, 40))
        streamed.start()
        plain.start()
        assert api.wait_running(lambda running: running >= 2, timeout=60) == 2
        server.process.send_signal(signal.SIGTERM)
        late = api.http.post(CHAT, json=body(api, 4))
        error = check_error(late, 503)
        assert error["code"] == "server_shutting_down"
        assert int(late.headers["retry-after"]) >= 1
        status, raw = streamed.result()
        assert status == 200
        events = sse.parse_events(raw)
        assert events[-1]["choices"][0]["finish_reason"] == "length"
        assert raw.endswith(b"data: [DONE]\n\n")
        status, raw = plain.result()
        assert status == 200
        assert httpx.Response(200, content=raw).json()["usage"]["completion_tokens"] == 40
        assert exit_code(server) == 0
        log = server.log()
        assert "Task exception was never retrieved" not in log and "Traceback" not in log


def test_past_the_drain_deadline_what_runs_ends_with_an_error_and_the_process_exits_0(launch):
    with launch("--drain-timeout", "1") as server, closing(server.api()) as api:
        streamed = InFlight(server, body(api, 2000, stream=True))
        plain = InFlight(server, body(api, 2000))
        streamed.start()
        plain.start()
        assert api.wait_running(lambda running: running >= 2, timeout=60) == 2
        server.process.send_signal(signal.SIGTERM)
        status, raw = streamed.result()
        assert status == 200
        assert b'data: {"error"' in raw and raw.endswith(b"data: [DONE]\n\n")
        status, raw = plain.result()
        assert status == 503
        check_error(
            httpx.Response(503, content=raw, headers={"content-type": "application/json"}), 503
        )
        assert exit_code(server) == 0
        log = server.log()
        assert "Task exception was never retrieved" not in log and "Traceback" not in log
