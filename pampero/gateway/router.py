"""``RouterBackend``: one public model id served by several providers, with failover.

The router is a ``ChatBackend`` wrapping provider backends (local, upstream) the way httpx
transports wrap transports. For each request it

1. lists the candidates: the providers of the model, then of each ``models`` fallback, filtered
   by the ``provider`` preferences and by what the request needs (a parameter a provider cannot
   honour, images, tools: never dropped, the provider is skipped); ordered by ``sort``, else by
   the routing policy; ``order`` moves named providers to the front;
2. tries them in turn within one deadline: each attempt gets what remains of it, bounded by the
   provider's first-token timeout. A connect error, timeout, 408/429/5xx, an empty or malformed
   start of answer fails over at once (a ``Retry-After`` cools the provider down instead of
   making anyone sleep); a 400/404/413/422 is relayed; a context-length error goes on only to
   candidates with a larger context;
3. for a stream, holds back the role chunk and commits at the first content, tool-call,
   reasoning or finish delta: before that every failure is invisible to the client; after it,
   a failure ends the stream with an in-band error chunk (``finish_reason: "error"``), never
   a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pampero.backends.base import (
    BackendBase,
    ChatBackend,
    ModelCard,
    RequestContext,
)
from pampero.errors import NotFoundError, PamperoError, UpstreamTimeout
from pampero.gateway.endpoints import (
    CHAT,
    COMPLETIONS,
    DETOKENIZE,
    TOKENIZE,
    Endpoint,
    attempt_request,
)
from pampero.gateway.failures import RETRYABLE, AttemptFailed, Relayed
from pampero.gateway.health import ProviderHealth
from pampero.gateway.selection import eligible_providers, needs_of, no_candidates
from pampero.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    Parsed,
    TokenizeRequest,
)
from pampero.protocol.common import GenerationFields
from pampero.protocol.provider import ProviderPreferences
from pampero.protocol.replies import Chunk, Reply

if TYPE_CHECKING:
    from pampero.gateway.gateway import Gateway

SUFFIXES = {":nitro": "throughput", ":floor": "price"}
DEFAULT_PREFERENCES = ProviderPreferences()


@dataclass
class Provider:
    """One provider of one model, as the router sees it."""

    name: str
    backend: ChatBackend
    health: ProviderHealth
    weight: float = 1.0
    quantization: str | None = None
    data_collection: str = "allow"
    first_token_timeout: float = math.inf
    # Whether a provider with no supported-parameter list checks every field itself (local
    # serving refuses with a 400 what it cannot honour), as opposed to an unknown upstream.
    knows_params: bool = False

    @property
    def card(self) -> ModelCard:
        return self.backend.card


class NoProviderAvailable(PamperoError):
    status_code = 503
    error_type = "service_unavailable"
    default_code = "no_provider_available"


class ProvidersRateLimited(PamperoError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "upstream_rate_limited"


def split_suffix(model: str) -> tuple[str, str | None]:
    for suffix, sort in SUFFIXES.items():
        if model.endswith(suffix):
            return model[: -len(suffix)], sort
    return model, None


class RouterBackend(BackendBase):
    """A public model id and its providers."""

    # The edge watches for a disconnect while a stream is not yet committed.
    holds_stream = True

    def __init__(self, card: ModelCard, gateway: Gateway) -> None:
        self.card = card
        self.gateway = gateway
        self.providers: list[Provider] = []

    def unsupported(self, request: GenerationFields) -> list[str]:
        return []  # checked per provider: a provider that cannot honour a field is skipped

    async def chat(self, parsed: Parsed[ChatCompletionRequest], context: RequestContext) -> Reply:
        return await Routing(self.gateway, CHAT, parsed, context, parsed.request.model).run()

    async def complete(self, parsed: Parsed[CompletionRequest], context: RequestContext) -> Reply:
        model = parsed.request.model
        return await Routing(self.gateway, COMPLETIONS, parsed, context, model).run()

    async def tokenize(self, parsed: Parsed[TokenizeRequest], context: RequestContext) -> Reply:
        model = parsed.request.model or self.card.id
        return await Routing(self.gateway, TOKENIZE, parsed, context, model).run()

    async def detokenize(self, parsed: Parsed[DetokenizeRequest], context: RequestContext) -> Reply:
        model = parsed.request.model or self.card.id
        return await Routing(self.gateway, DETOKENIZE, parsed, context, model).run()


@dataclass
class Routing:
    """One request's way through its candidates."""

    gateway: Gateway
    endpoint: Endpoint
    parsed: Parsed[Any]
    context: RequestContext
    model: str  # as the client named it (a suffix included)
    tried: list[str] = field(default_factory=list)
    attempts: int = 0

    async def run(self) -> Reply:
        request = self.parsed.request
        preferences = getattr(request, "provider", None) or DEFAULT_PREFERENCES
        name, sort = split_suffix(self.model)
        if sort is not None and preferences.sort is None:
            preferences = preferences.model_copy(update={"sort": sort})
        self.gateway.check_names(preferences)
        needs = needs_of(self.parsed)
        chain = [name, *(getattr(request, "models", None) or ())]
        candidates: list[tuple[str, Provider]] = []
        skipped: dict[str, str] = {}
        serves = self.endpoint.serves
        for i, model in enumerate(chain):
            router = self.gateway.router(model, param="model" if i == 0 else f"models[{i - 1}]")
            providers = [p for p in router.providers if serves(p)]
            eligible = eligible_providers(providers, preferences, needs, skipped)
            ordered = self.gateway.order(
                eligible,
                preferences,
                self.context.session,
                model=router.card.id,
                request=self.parsed,
            )
            candidates.extend((router.card.id, p) for p in ordered)
        if not candidates:
            if not skipped:  # no provider of any model in the chain serves this endpoint
                raise NotFoundError(
                    f"no provider of the model '{name}' serves {self.endpoint.path}",
                    param="model",
                    code="model_not_found",
                )
            raise no_candidates(name, skipped)
        deadline = self.context.arrival + self.gateway.settings.gateway_timeout
        if self.context.deadline is not None:
            deadline = min(deadline, self.context.deadline)
        return await self._try(candidates, deadline)

    async def _try(self, candidates: list[tuple[str, Provider]], deadline: float) -> Reply:
        larger_than = 0  # after a context-length failure: only larger contexts are tried
        relay: PamperoError | None = None
        unserved: PamperoError | None = None  # relayed if no candidate serves the endpoint
        others = 0  # candidates tried that serve it (or cooling down)
        for _model, provider in candidates:
            if larger_than and (provider.card.context_length or 0) <= larger_than:
                continue
            health = provider.health
            if not health.available():
                self.tried.append(f"{provider.name}: cooling down ({_seconds(health.retry_in())})")
                others += 1
                continue
            if deadline - time.perf_counter() <= 0:
                break
            try:
                return await self._attempt(provider, deadline)
            except AttemptFailed as failed:
                self.tried.append(f"{provider.name}: {failed.reason}")
                if failed.context_length:
                    larger_than = provider.card.context_length or math.inf  # type: ignore[assignment]
                    relay = failed.error
                elif failed.unserved:
                    unserved = unserved or failed.error
                else:
                    others += 1
        if relay is not None:
            raise relay
        if unserved is not None and not others:
            raise unserved
        raise self._exhausted(candidates, deadline)

    async def _attempt(self, provider: Provider, deadline: float) -> Reply:
        self.attempts += 1
        model = provider.card.id  # the model that answers names itself (a fallback bills as itself)
        endpoint = self.endpoint
        request = self.parsed.request
        stream = bool(getattr(request, "stream", False))
        sub = attempt_request(self.parsed, provider.card.id, stream)
        context = RequestContext(
            arrival=self.context.arrival,
            deadline=deadline,
            caller=self.context.caller,
            priority=self.context.priority,
            request_id=self.context.request_id,
            session=self.context.session,
        )
        health = provider.health
        metrics = self.gateway.metrics
        health.admit()
        started = time.perf_counter()
        budget = max(0.0, min(deadline - started, provider.first_token_timeout))
        chunks: AsyncIterator[Chunk] | None = None
        try:
            async with asyncio.timeout(budget):
                reply = await endpoint.ask(provider.backend, sub, context)
                chunks = reply.stream
                held: list[Chunk] = []
                if chunks is not None:
                    held = await _until_commit(chunks)
        except BaseException as exc:
            health.release()
            if chunks is not None:
                await _close(chunks)
            failure = self._failure(exc, provider, started, budget)
            metrics.attempts.labels(provider.name, "failed").inc()
            raise failure from None
        latency: float | None = None  # a tokenizer's speed says nothing of the first token
        if endpoint.names_answer:
            latency = time.perf_counter() - started
            metrics.first_token.labels(provider.name).observe(latency)
        headers = {"x-pampero-provider": provider.name, "x-pampero-attempts": str(self.attempts)}
        if chunks is None:
            health.release()
            health.success(latency)
            metrics.attempts.labels(provider.name, "ok").inc()
            body: dict[str, Any] = reply.body  # type: ignore[assignment]
            if endpoint.names_answer:
                body["model"] = model
                body["provider"] = provider.name
                self.gateway.bill(provider.name, body.get("usage"))
            return Reply(body=body, headers={**reply.headers, **headers})
        health.success(latency)
        want_usage = bool(request.stream_options and request.stream_options.include_usage)
        tail = _committed(
            self.gateway, endpoint, provider, model, chunks, held, want_usage, started
        )
        return Reply(stream=tail, headers={**reply.headers, **headers})

    def _failure(
        self, exc: BaseException, provider: Provider, started: float, budget: float
    ) -> AttemptFailed:
        """``exc`` as an ``AttemptFailed`` (the provider's health updated), or re-raised."""
        health = provider.health
        if isinstance(exc, TimeoutError):
            failed = AttemptFailed(f"no first token within {budget:.3g} s", timeout=True)
        elif isinstance(exc, AttemptFailed):
            failed = exc
        elif (
            isinstance(exc, PamperoError)
            and (exc.status_code in RETRYABLE or exc.status_code >= 500)
            and not isinstance(exc, Relayed)
        ):
            failed = AttemptFailed(
                f"{exc.status_code} {exc.code or exc.error_type}",
                status=exc.status_code,
                retry_after=exc.retry_after,
            )
        elif (
            isinstance(exc, PamperoError)
            and getattr(exc, "code", None) == "context_length_exceeded"
        ):
            health.neutral()
            return AttemptFailed("context too long", context_length=True, error=exc)
        elif isinstance(exc, NotFoundError) and self.endpoint is not CHAT:
            # This provider does not serve the endpoint (or the model there): another may.
            health.neutral()
            return AttemptFailed(
                f"{exc.status_code} {exc.code or exc.error_type}", unserved=True, error=exc
            )
        else:
            health.neutral()
            if isinstance(exc, PamperoError):
                self.gateway.metrics.attempts.labels(provider.name, "relayed").inc()
            raise exc
        if failed.context_length or failed.unserved:
            health.neutral()
        else:
            health.failure(failed.reason, retry_after=failed.retry_after, auth=failed.auth)
        return failed

    def _exhausted(self, candidates: list[tuple[str, Provider]], deadline: float) -> PamperoError:
        model = self.model
        detail = "; ".join(self.tried) or "none was tried"
        if deadline - time.perf_counter() <= 0:
            return UpstreamTimeout(
                f"No provider of '{model}' answered within the request's deadline. Tried: {detail}."
            )
        waits = [p.health.retry_in() for _, p in candidates]
        retry_after = max(1, math.ceil(min(waits))) if waits else 1
        message = f"No provider of '{model}' could answer. Tried: {detail}."
        if self.tried and all(" 429" in t or "HTTP 429" in t for t in self.tried):
            return ProvidersRateLimited(message, retry_after=retry_after)
        return NoProviderAvailable(message, retry_after=retry_after)


async def _until_commit(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    """The chunks up to and including the first that commits the stream."""
    held: list[Chunk] = []
    async for chunk in chunks:
        held.append(chunk)
        if commits(chunk):
            return held
    raise AttemptFailed("the stream ended before any content")


def commits(chunk: Chunk) -> bool:
    """Whether ``chunk`` carries something the client must see (content, a tool call,
    reasoning, or the end of a choice): past it, a failover would repeat or lose output."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if (
            delta.get("content")
            or delta.get("tool_calls")
            or delta.get("reasoning_content")
            or delta.get("reasoning")
            or delta.get("function_call")
            or choice.get("text")
            or choice.get("finish_reason")
        ):
            return True
    return False


async def _committed(
    gateway: Gateway,
    endpoint: Endpoint,
    provider: Provider,
    model: str,
    chunks: AsyncIterator[Chunk],
    held: list[Chunk],
    want_usage: bool,
    started: float,
) -> AsyncIterator[Chunk]:
    """The rest of a committed stream; a failure becomes one in-band error chunk."""
    health = provider.health
    last: Chunk | None = None
    completion_tokens = 0
    ok = False
    try:
        for chunk in held:
            last = chunk
            shown = _shown(gateway, provider, model, chunk, want_usage)
            if shown is not None:
                yield shown
        async for chunk in chunks:
            last = chunk
            usage = chunk.get("usage")
            if usage:
                completion_tokens = int(usage.get("completion_tokens") or 0)
            shown = _shown(gateway, provider, model, chunk, want_usage)
            if shown is not None:
                yield shown
        ok = True
    except (AttemptFailed, PamperoError) as exc:
        reason = exc.reason if isinstance(exc, AttemptFailed) else exc.message
        health.failure(reason)
        gateway.metrics.attempts.labels(provider.name, "failed").inc()
        timeout = isinstance(exc, AttemptFailed) and exc.timeout
        yield endpoint.error_chunk(last, model, provider.name, reason, timeout)  # type: ignore[misc]
    finally:
        health.release()
        await _close(chunks)
    if ok:
        elapsed = time.perf_counter() - started
        gateway.metrics.attempts.labels(provider.name, "ok").inc()
        if completion_tokens and elapsed > 0:
            health.throughput = _tps(health.throughput, completion_tokens / elapsed)


def _shown(
    gateway: Gateway, provider: Provider, model: str, chunk: Chunk, want_usage: bool
) -> Chunk | None:
    chunk["model"] = model
    chunk["provider"] = provider.name
    usage = chunk.get("usage")
    if usage:
        gateway.bill(provider.name, usage)
    if not want_usage and "usage" in chunk:
        if not chunk.get("choices"):
            return None  # the usage chunk the router asked for, not the client
        del chunk["usage"]
    return chunk


def _tps(old: float | None, new: float) -> float:
    return new if old is None else old + 0.2 * (new - old)


async def _close(chunks: AsyncIterator[Any]) -> None:
    if getattr(chunks, "ag_frame", True) is None:
        return  # a finished async generator holds nothing; shielding costs a task and a wait,
        # which would also split the stream's last events from the others
    closer = getattr(chunks, "aclose", None)
    if closer is not None:
        # A broken upstream may fail to close; it is dropped either way.
        with contextlib.suppress(Exception):
            await asyncio.shield(closer())


def _seconds(value: float) -> str:
    return f"retry in {value:.1f} s"


__all__ = ["Provider", "RouterBackend", "split_suffix"]
