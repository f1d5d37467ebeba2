"""An upstream OpenAI-compatible server, and one of its models as a ``ChatBackend``.

``Upstream`` owns one pooled keep-alive HTTP session (aiohttp: it measured fastest of httpx,
httpcore and aiohttp, docs/benchmarks.md) and the API key, which never leaves this module.
``UpstreamBackend`` forwards the request body as the client sent it (minus the gateway's own
fields, with the upstream's model id), parses each answer or stream chunk once with orjson, and
hands plain dicts on: no per-chunk model objects. Every failure is an ``AttemptFailed`` (or, for
an upstream's own 400/404/413/422, ``Relayed``); the router decides what the client sees.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from pampero.backends.base import BackendBase, ModelCard, RequestContext
from pampero.gateway.failures import (
    AUTH,
    RETRYABLE,
    AttemptFailed,
    Relayed,
    is_context_length,
    retry_after_seconds,
    upstream_error,
)
from pampero.pricing import Price, micro_usd, usd
from pampero.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    Parsed,
    TokenizeRequest,
)
from pampero.protocol.replies import Chunk, Reply
from pampero.settings import Settings, UpstreamConfig

log = logging.getLogger(__name__)

# Fields of a request that are the gateway's, never forwarded.
GATEWAY_FIELDS = ("provider", "models")
# vLLM serves these at the server's root, beside /v1 (pampero serves both places).
TOKENIZE_PATH, DETOKENIZE_PATH = "/tokenize", "/detokenize"
TOKEN_PATHS = frozenset({TOKENIZE_PATH, DETOKENIZE_PATH})
# The longest stream event line an upstream may send (a client's body is capped likewise).
MAX_EVENT_BYTES = 16 << 20
# Statuses saying that an upstream lacks an endpoint.
MISSING = frozenset({404, 405, 501})


def api_base(url: str) -> str:
    """``url`` as the base of ``/chat/completions``: a bare host gets ``/v1``."""
    return url if urlsplit(url).path not in ("", "/") else url.rstrip("/") + "/v1"


class Upstream:
    """One configured upstream: address, key, timeouts and its HTTP connection pool."""

    def __init__(self, config: UpstreamConfig, settings: Settings) -> None:
        self.config = config
        self.name = config.name
        self.base = api_base(config.url)
        # The server's root, for vLLM's /tokenize and /detokenize.
        self.root = self.base.removesuffix("/v1")
        self.connect_timeout = config.connect_timeout or settings.upstream_connect_timeout
        self.first_token_timeout = (
            config.first_token_timeout or settings.upstream_first_token_timeout
        )
        self.stall_timeout = config.stall_timeout or settings.upstream_stall_timeout
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        key = os.environ.get(config.key_env) if config.key_env else None
        if config.key_env and not key:
            log.warning(
                "upstream %s: the variable %s holding its key is unset", self.name, config.key_env
            )
        if key:
            self._headers["authorization"] = f"Bearer {key}"
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_connections, keepalive_timeout=30, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def list_models(self, timeout: float) -> list[dict[str, Any]]:
        """The upstream's ``GET /v1/models`` entries (raises on any failure)."""
        async with self.session.get(
            self.base + "/models",
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=self.connect_timeout),
        ) as response:
            response.raise_for_status()
            body = orjson.loads(await response.read())
        data = body.get("data") if isinstance(body, dict) else None
        return [m for m in data or () if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def post(
        self, path: str, body: bytes, timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """POST ``body`` to ``path`` under the API base (``/chat/completions``), or at the
        server's root for vLLM's ``/tokenize``; a connection failure or timeout is an
        ``AttemptFailed``."""
        try:
            url = (self.root if path in TOKEN_PATHS else self.base) + path
            return await self.session.post(url, data=body, headers=self._headers, timeout=timeout)
        except TimeoutError:
            raise AttemptFailed("timed out connecting", timeout=True) from None
        except aiohttp.ClientError as exc:
            raise AttemptFailed(f"connection failed ({type(exc).__name__})") from None


class UpstreamBackend(BackendBase):
    """One model of one upstream provider."""

    def __init__(
        self,
        upstream: Upstream,
        card: ModelCard,
        upstream_id: str,
        *,
        quantization: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.card = card
        self.upstream_id = upstream_id
        self.quantization = quantization
        self.weight = upstream.config.weight
        self.data_collection = upstream.config.data_collection
        self.first_token_timeout = upstream.first_token_timeout

    async def chat(self, parsed: Parsed[ChatCompletionRequest], context: RequestContext) -> Reply:
        return await self._forward("/chat/completions", parsed, context)

    async def complete(self, parsed: Parsed[CompletionRequest], context: RequestContext) -> Reply:
        return await self._forward("/completions", parsed, context, unserved_if_missing=True)

    async def tokenize(self, parsed: Parsed[TokenizeRequest], context: RequestContext) -> Reply:
        return await self._forward(TOKENIZE_PATH, parsed, context, unserved_if_missing=True)

    async def detokenize(self, parsed: Parsed[DetokenizeRequest], context: RequestContext) -> Reply:
        return await self._forward(DETOKENIZE_PATH, parsed, context, unserved_if_missing=True)

    async def _forward(
        self,
        path: str,
        parsed: Parsed[Any],
        context: RequestContext,
        *,
        unserved_if_missing: bool = False,
    ) -> Reply:
        """POST the request as the client sent it (with the upstream's model id) to ``path``;
        the answer parsed once, or its stream as chunks. ``unserved_if_missing``: a 404 (405,
        501) means the upstream lacks the endpoint, and another provider may have it."""
        body = {k: v for k, v in parsed.raw.items() if k not in GATEWAY_FIELDS}
        body["model"] = self.upstream_id
        stream = bool(getattr(parsed.request, "stream", False))
        if stream:
            # Usage is always asked for (the router bills from it and strips it if unwanted).
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        remaining = None if context.deadline is None else context.deadline - time.perf_counter()
        if remaining is not None and remaining <= 0:
            raise AttemptFailed("no time left", timeout=True)
        timeout = aiohttp.ClientTimeout(
            total=remaining,
            sock_connect=self.upstream.connect_timeout,
            sock_read=self.upstream.stall_timeout if stream else None,
        )
        response = await self.upstream.post(path, orjson.dumps(body), timeout)
        if response.status != 200:
            await self._refuse(response, path if unserved_if_missing else None)
        if stream:
            return Reply(stream=self._chunks(response))
        try:
            raw = await response.read()
        except TimeoutError:
            raise AttemptFailed("timed out reading the answer", timeout=True) from None
        except aiohttp.ClientError as exc:
            raise AttemptFailed(f"connection lost ({type(exc).__name__})") from None
        finally:
            response.release()
        if path in TOKEN_PATHS:
            return Reply(body=self._tokens(raw))
        return Reply(body=self._answer(raw))

    def _tokens(self, raw: bytes) -> dict[str, Any]:
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise AttemptFailed("malformed answer (not JSON)") from None
        if not isinstance(answer, dict):
            raise AttemptFailed("malformed answer (not an object)")
        return answer

    def _answer(self, raw: bytes) -> dict[str, Any]:
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise AttemptFailed("malformed answer (not JSON)") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            if isinstance(answer, dict) and "error" in answer:
                raise AttemptFailed(f"error in the answer: {_message(answer)}")
            raise AttemptFailed("malformed answer (no choices)")
        answer["model"] = self.card.id
        answer["provider"] = self.card.provider
        self._cost(answer)
        return answer

    async def _refuse(self, response: aiohttp.ClientResponse, unserved: str | None) -> None:
        status = response.status
        try:
            body = orjson.loads(await response.read())
        except (TimeoutError, orjson.JSONDecodeError, aiohttp.ClientError):
            body = None
        finally:
            response.release()
        error = upstream_error(body)
        reason = f"HTTP {status}"
        if status in AUTH:
            raise AttemptFailed(
                f"{reason} (the provider refused its key)", status=status, auth=True
            )
        if status in RETRYABLE or status >= 500:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            raise AttemptFailed(reason, status=status, retry_after=retry_after)
        relayed = Relayed(status, error, self.card.provider)
        if unserved is not None and status in MISSING:
            raise AttemptFailed(f"{reason} (no {unserved} there)", unserved=True, error=relayed)
        if is_context_length(status, error):
            raise AttemptFailed(reason, status=status, context_length=True, error=relayed)
        raise relayed

    def _cost(self, holder: dict[str, Any]) -> None:
        usage = holder.get("usage")
        price: Price | None = self.card.price
        if price is None or not isinstance(usage, dict) or "cost" in usage:
            return
        usage["cost"] = usd(
            micro_usd(
                price,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        )

    async def _chunks(self, response: aiohttp.ClientResponse) -> AsyncIterator[Chunk]:
        """The upstream's SSE stream as chunks; it must end with ``[DONE]``."""
        done = False
        buffer = b""
        model, provider = self.card.id, self.card.provider
        try:
            async for data in response.content.iter_any():
                lines = (buffer + data if buffer else data).split(b"\n")
                buffer = lines.pop()  # an incomplete line waits for the next read
                if len(buffer) > MAX_EVENT_BYTES:
                    raise AttemptFailed("malformed stream (an event without end)")
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue  # blank separators, comments (keep-alives), event names
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        return
                    chunk = _chunk(payload)
                    chunk["model"] = model
                    chunk["provider"] = provider
                    if chunk.get("usage"):
                        self._cost(chunk)
                    yield chunk  # type: ignore[misc]
        except TimeoutError:
            raise AttemptFailed("the stream stalled", timeout=True) from None
        except aiohttp.ClientError as exc:
            raise AttemptFailed(f"the stream broke ({type(exc).__name__})") from None
        finally:
            if done:
                response.release()
            else:
                response.close()  # abort: the upstream stops generating for nobody
        raise AttemptFailed("the stream ended before [DONE]")


def _chunk(payload: bytes) -> dict[str, Any]:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise AttemptFailed("malformed chunk (not JSON)") from None
    if not isinstance(chunk, dict):
        raise AttemptFailed("malformed chunk (not an object)")
    if "error" in chunk:  # OpenAI's, vLLM's and OpenRouter's in-band errors
        raise AttemptFailed(f"in-band error: {_message(chunk)}")
    if not isinstance(chunk.get("choices"), list):
        raise AttemptFailed("malformed chunk (no choices)")
    return chunk


def _message(body: dict[str, Any]) -> str:
    return str(upstream_error(body).get("message") or "unknown")[:200]
