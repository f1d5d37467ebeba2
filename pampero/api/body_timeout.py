"""A deadline on receiving a request's body: a client that sends its headers and then drips
(or stops sending) its body gets a 408 in OpenAI's error shape once ``body_timeout`` seconds
have passed since the request began, and its connection is closed; everything else is served
meanwhile. Once the body is complete, ``receive`` is passed through untouched (a route waits on
it for the client's disconnect)."""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pampero.errors import RequestTimeout


class BodyTimeout:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.seconds
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:  # a timeout scope, not wait_for: on Python 3.11 that is a task per receive
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive within {self.seconds:g} s"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed_receive, send)
