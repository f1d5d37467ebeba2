"""A fault-injecting OpenAI-compatible upstream the tests control, on loopback.

``FaultUpstream(name)`` serves ``GET /v1/models``, ``POST /v1/chat/completions`` and
``POST /v1/completions`` (the same behaviours, in ``text_completion`` shapes) from a raw
asyncio server in its own thread (raw, so that it can reset a connection, stall before the
first byte or cut a stream mid-way exactly as a failing server does). It answers instantly,
as itself: the content is ``"I am NAME."``, streamed as one chunk per word.

Each request takes the next behaviour from ``script`` (a list the test sets), else
``default``. Behaviours:

    ok            the answer (streamed if asked)
    status:S[:R]  HTTP S with an OpenAI error body (and Retry-After: R)
    ctx           400 context_length_exceeded
    reset         a TCP reset before any byte
    stall         never answers (until the client gives up)
    slow:T        the answer after T seconds
    stall-mid     streamed: the first content chunk, then silence
    cut           streamed: the first content chunk, then the connection closes
    malformed     streamed: the role chunk, then a chunk that is not JSON (not streamed:
                  a body that is not JSON)
    inband        streamed: the role chunk, then an in-band error
    inband-mid    streamed: the first content chunk, then an in-band error
    empty         streamed: the role chunk, then [DONE]

``requests`` counts the chat and completions requests received; ``bodies`` keeps their JSON
bodies and ``paths`` their paths; any other path is a 404;
``disconnects`` counts connections the client closed while an answer was still pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from typing import Any

import orjson


class FaultUpstream:
    def __init__(
        self, name: str, models: tuple[str, ...] = ("m",), host: str = "127.0.0.1", port: int = 0
    ):
        self.name = name
        self.models = models
        self.script: list[str] = []
        self.default = "ok"
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.disconnects = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(host, port), daemon=True)
        self.thread.start()
        self.ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self, *script: str, default: str = "ok") -> None:
        self.script = list(script)
        self.default = default
        self.requests = 0
        self.bodies = []
        self.paths = []
        self.disconnects = 0

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    def _run(self, host: str, port: int) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, host, port))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    key, _, value = line.partition(b":")
                    if key.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if path.endswith(b"/models"):
                    data = [
                        {"id": m, "object": "model", "owned_by": self.name} for m in self.models
                    ]
                    self._send(writer, 200, orjson.dumps({"object": "list", "data": data}))
                    continue
                if method != b"POST" or not path.endswith(b"/completions"):
                    self._send(writer, 404, orjson.dumps({"error": {"message": "no route"}}))
                    continue
                self.paths.append(path.decode())
                text = not path.endswith(b"/chat/completions")
                if not await self._chat(reader, writer, orjson.loads(body), text):
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _chat(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: dict[str, Any],
        text: bool,
    ) -> bool:
        """Answer one chat (``text``: completions) request; False when the connection must end."""
        self.requests += 1
        self.bodies.append(request)
        behaviour = self.script.pop(0) if self.script else self.default
        kind, _, arg = behaviour.partition(":")
        stream = bool(request.get("stream"))
        if kind == "status":
            status, _, retry = arg.partition(":")
            headers = {"retry-after": retry} if retry else {}
            error = {"message": f"{self.name} says {status}", "type": "x", "code": status}
            self._send(writer, int(status), orjson.dumps({"error": error}), headers)
            return True
        if kind == "ctx":
            error = {
                "message": "maximum context length exceeded",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
            self._send(writer, 400, orjson.dumps({"error": error}))
            return True
        if kind == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if kind == "stall":
            await self._wait_gone(reader)
            return False
        if kind == "slow":
            await asyncio.sleep(float(arg))
        if not stream:
            if kind == "malformed":
                self._send(writer, 200, b"{not json")
                return True
            self._send(writer, 200, orjson.dumps(self._completion(text)))
            return True
        return await self._stream(reader, writer, request, kind, text)

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: dict[str, Any],
        kind: str,
        text: bool,
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        words = f"I am {self.name}.".split(" ")
        role = self._chunk({"role": "assistant", "content": ""}, text=text)
        self._event(writer, orjson.dumps(role))
        if kind == "malformed":
            self._event(writer, b"{not json")
            self._end(writer)
            return True
        if kind == "inband":
            self._event(writer, orjson.dumps({"error": {"message": "overloaded", "code": 503}}))
            self._end(writer)
            return True
        if kind == "empty":
            self._event(writer, b"[DONE]")
            self._end(writer)
            return True
        self._event(writer, orjson.dumps(self._chunk({"content": words[0]}, text=text)))
        if kind in ("stall-mid", "cut", "inband-mid"):
            await writer.drain()
            if kind == "stall-mid":
                await self._wait_gone(reader)
                return False
            if kind == "inband-mid":
                self._event(writer, orjson.dumps({"error": {"message": "died", "code": 500}}))
                self._end(writer)
                return True
            writer.transport.abort()  # cut: no end of stream, no [DONE]
            return False
        for word in words[1:]:
            self._event(writer, orjson.dumps(self._chunk({"content": " " + word}, text=text)))
        self._event(writer, orjson.dumps(self._chunk({}, finish="stop", text=text)))
        options = request.get("stream_options") or {}
        if options.get("include_usage"):
            usage = self._chunk({}, usage=True, text=text)
            usage["choices"] = []
            self._event(writer, orjson.dumps(usage))
        self._event(writer, b"[DONE]")
        self._end(writer)
        return True

    def _chunk(
        self,
        delta: dict[str, Any],
        finish: str | None = None,
        usage: bool = False,
        text: bool = False,
    ) -> dict[str, Any]:
        if text:
            chunk = self._text_completion(delta.get("content") or "", finish)
            if usage:
                chunk["usage"] = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
            return chunk
        chunk: dict[str, Any] = {
            "id": "chatcmpl-" + self.name,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.models[0],
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if usage:
            chunk["usage"] = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
        return chunk

    def _text_completion(self, text: str, finish: str | None) -> dict[str, Any]:
        return {
            "id": "cmpl-" + self.name,
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.models[0],
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        }

    def _completion(self, text: bool) -> dict[str, Any]:
        if text:
            answer = self._text_completion(f"I am {self.name}.", "stop")
            answer["usage"] = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
            return answer
        return {
            "id": "chatcmpl-" + self.name,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.models[0],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"I am {self.name}."},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        }

    async def _wait_gone(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while await reader.read(1024):
                pass
        self.disconnects += 1

    @staticmethod
    def _event(writer: asyncio.StreamWriter, data: bytes) -> None:
        payload = b"data: " + data + b"\n\n"
        writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))

    @staticmethod
    def _end(writer: asyncio.StreamWriter) -> None:
        writer.write(b"0\r\n\r\n")

    @staticmethod
    def _send(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n".encode()
            + body
        )
