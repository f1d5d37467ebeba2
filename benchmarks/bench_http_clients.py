"""Which HTTP client the gateway's upstreams use: httpx, httpcore or aiohttp, measured.

    .venv/bin/python benchmarks/bench_http_clients.py [--requests 3000]

One instant HTTP/1.1 server on loopback (raw asyncio, keep-alive) and, in the same uvloop event
loop, one client at a time sending sequential POSTs of a small chat request over a pooled
keep-alive connection and parsing the JSON answer with orjson; p50 and p99 per request, two
rounds each (the second is the one to read: pools and caches are warm).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import orjson

BODY = orjson.dumps(
    {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                  "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
)  # fmt: skip
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(BODY)
    + BODY
)
REQUEST = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
HEADERS = {"content-type": "application/json"}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            writer.write(ANSWER)
    writer.close()


async def measure(name: str, send: Callable[[], Awaitable[None]], n: int) -> str:
    for _ in range(200):
        await send()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await send()
        times.append(time.perf_counter() - started)
    times.sort()
    return f"{name}: p50 {times[n // 2] * 1e6:.0f} us, p99 {times[int(n * 0.99)] * 1e6:.0f} us"


async def main(n: int) -> None:
    import aiohttp
    import httpcore
    import httpx

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
    client = httpx.AsyncClient()
    pool = httpcore.AsyncConnectionPool()
    session = aiohttp.ClientSession()

    async def with_httpx() -> None:
        orjson.loads((await client.post(url, content=REQUEST, headers=HEADERS)).content)

    async def with_httpcore() -> None:
        response = await pool.request("POST", url, content=REQUEST, headers=HEADERS)
        orjson.loads(response.content)

    async def with_aiohttp() -> None:
        async with session.post(url, data=REQUEST, headers=HEADERS) as response:
            orjson.loads(await response.read())

    for round_ in (1, 2):
        for name, send in (("httpx", with_httpx), ("httpcore", with_httpcore),
                           ("aiohttp", with_aiohttp)):  # fmt: skip
            print(f"round {round_} {await measure(name, send, n)}")
    await client.aclose()
    await pool.aclose()
    await session.close()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    import uvloop

    uvloop.run(main(parser.parse_args().requests))
