"""Loopback HTTP servers for image tests: an image host that can misbehave, and canaries.

``start(host)`` runs a ``Server`` on a free port of ``host`` in a thread; ``stop`` shuts it down
and joins its handler threads. A server counts every TCP connection it accepts (not just HTTP
requests), so a canary that must never be reached can prove "zero hits". Routes (first path
segment; ``-`` in a path reads as ``_``):

    /img?w=32           a red PNG, w x 24          /octet      a PNG sent as octet-stream
    /page               an HTML page               /junk       bytes that are not an image
    /chain/N            N relative redirects, then /img
    /to?u=URL&status=S  one redirect to URL        /slow-headers  silent for 10 s or until stop
    /dribble            one byte every 50 ms       /huge[?length=1]  100 MB of zeros
    /delay?s=0.3        /img after a delay         /gate       /img, counting requests in flight
    /files/NAME         ``server.files[NAME]`` (body, content type), 404 when absent

Anything else is a 404.
"""

from __future__ import annotations

import io
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

HUGE = 100 * 1024 * 1024
CHUNK = 64 * 1024


def png(width: int = 32, height: int = 24, color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


class Server(ThreadingHTTPServer):
    """A loopback HTTP server that counts connections and records what its handlers saw."""

    daemon_threads = False
    block_on_close = True  # server_close() joins every handler thread

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.paths: list[str] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.stop = threading.Event()
        self.done = threading.Condition(self.lock)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str) -> str:
        """``http://host:port/path`` on this server."""
        host = self.server_address[0]
        assert isinstance(host, str)
        return f"http://{host}:{self.port}{path}"

    def put(self, name: str, body: bytes, content_type: str = "image/png") -> str:
        """Serve ``body`` at ``/files/name``; returns its URL."""
        with self.lock:
            self.files[name] = (body, content_type)
        return self.url(f"/files/{name}")

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.lock:
            self.connections += 1
        return True

    def record(self, path: str, **facts: Any) -> None:
        with self.done:
            self.records[path] = facts
            self.done.notify_all()

    def wait_record(self, path: str, timeout: float = 10.0) -> dict[str, Any]:
        with self.done:
            assert self.done.wait_for(lambda: path in self.records, timeout), path
            return self.records[path]


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.server.lock:
            self.server.paths.append(url.path)
        route = getattr(self, "route_" + url.path.strip("/").split("/")[0].replace("-", "_"), None)
        if route is None:
            self.send_error(404)
            return
        route(url.path, query)

    def reply(self, body: bytes, content_type: str = "image/png") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_img(self, path: str, query: dict[str, str]) -> None:
        self.reply(png(int(query.get("w", 32)), 24))

    def route_files(self, path: str, query: dict[str, str]) -> None:
        with self.server.lock:
            found = self.server.files.get(path.removeprefix("/files/"))
        if found is None:
            self.send_error(404)
            return
        self.reply(*found)

    def route_octet(self, path: str, query: dict[str, str]) -> None:
        self.reply(png(), "application/octet-stream")

    def route_page(self, path: str, query: dict[str, str]) -> None:
        self.reply(b"<html><body>hello</body></html>", "text/html; charset=utf-8")

    def route_junk(self, path: str, query: dict[str, str]) -> None:
        self.reply(b"definitely not an image" * 10, "application/octet-stream")

    def route_chain(self, path: str, query: dict[str, str]) -> None:
        left = int(path.rsplit("/", 1)[1])
        if left == 0:
            self.route_img(path, query)
            return
        self.send_response(302)
        self.send_header("Location", f"/chain/{left - 1}")  # relative, as servers often send
        self.end_headers()

    def route_to(self, path: str, query: dict[str, str]) -> None:
        self.send_response(int(query.get("status", 302)))
        self.send_header("Location", query["u"])
        self.end_headers()

    def route_slow_headers(self, path: str, query: dict[str, str]) -> None:
        self.server.stop.wait(10)

    def route_dribble(self, path: str, query: dict[str, str]) -> None:
        # Headers at once, then one byte at a time: every read is quick, the whole is not.
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        try:
            while not self.server.stop.wait(0.05):
                self.wfile.write(b"x")
                self.wfile.flush()
        except OSError:
            pass

    def route_huge(self, path: str, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        if query.get("length"):
            self.send_header("Content-Length", str(HUGE))
        self.end_headers()
        self.wfile.flush()
        if query.get("length"):
            # Send no body until the client either reads on or hangs up on the headers alone.
            closed = _peer_closed(self.connection, timeout=10)
            self.server.record(path + "?length", closed_before_body=closed)
            return
        sent, aborted = 0, False
        try:
            while sent < HUGE:
                self.wfile.write(b"\0" * CHUNK)
                sent += CHUNK
        except OSError:
            aborted = True
        self.server.record(path, sent=sent, aborted=aborted)

    def route_delay(self, path: str, query: dict[str, str]) -> None:
        self.server.stop.wait(float(query["s"]))
        self.route_img(path, query)

    def route_gate(self, path: str, query: dict[str, str]) -> None:
        server = self.server
        with server.lock:
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        server.stop.wait(0.2)
        with server.lock:
            server.in_flight -= 1
        self.route_img(path, query)


def _peer_closed(sock: socket.socket, timeout: float) -> bool:
    readable, _, _ = select.select([sock], [], [], timeout)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def start(host: str = "127.0.0.1", port: int = 0) -> Server:
    server = Server((host, port))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def stop(server: Server) -> None:
    server.stop.set()
    server.shutdown()
    server.server_close()
