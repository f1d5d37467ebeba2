"""The edge of accounts: who is calling (``AccountAuth``), admission and settlement of each
inference request (``admit`` and ``Meter``), and the key and usage routes (``/v1/key``,
``/v1/usage``, ``/admin/keys...``: ``account_routes``; their handlers, which load the database
layer, are in ``account_admin.py``). Every server imports this module; only one with accounts
imports SQLAlchemy.

With accounts on, every path but /health needs ``Authorization: Bearer`` with a database key
(``sk-pam-...``) or a static ``--api-key`` key. Admin keys manage keys and read everyone's
usage; they cannot call inference, and only they reach ``/admin``. A key's limits are taken
before the backend is called; its ``x-ratelimit-*`` headers go on the response, errors
included. A secret never reaches a log line: logs name a key by its prefix.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hmac
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pampero.accounts.outcome import Outcome
from pampero.api.errors import body_of
from pampero.api.middleware import is_open_path, reply
from pampero.backends import ChatBackend, RequestContext
from pampero.errors import (
    AccountsUnavailable,
    ModelNotFound,
    NotFoundError,
    PermissionDenied,
    RateLimited,
)
from pampero.pricing import micro_usd
from pampero.protocol.common import StreamOptions
from pampero.protocol.replies import Chunk, Reply
from pampero.responses import ResponsesReply

if TYPE_CHECKING:
    from pampero.accounts import Accounts, Key, Ticket

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - an item of a stream
R = TypeVar("R", Reply, ResponsesReply)

INFERENCE_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/chat/completions",
        "/functions/v1/chat/completions",
        "/v1/completions",
        "/completions",
        "/v1/responses",
        "/responses",
        "/tokenize",
        "/v1/tokenize",
        "/detokenize",
        "/v1/detokenize",
    }
)
# Tokens a chat template adds around the messages, beyond the body's own bytes.
TEMPLATE_TOKENS = 64
# The completion bound of a request without max_tokens to a model of unknown context.
UNKNOWN_CONTEXT = 131072


@dataclass(frozen=True)
class Principal:
    """Who sent a request: a database key, or (``key`` None) a static ``--api-key`` key."""

    key: Key | None


def principal_of(request: Request) -> Principal | None:
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    return principal


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else None
    return None


class AccountAuth:
    """``BearerAuth`` for a server with accounts: static keys, then the accounts database."""

    def __init__(
        self, app: ASGIApp, keys: list[str], open_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open_path(scope["path"], self.open_paths):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._principal(scope)
        except (AccountsUnavailable, PermissionDenied) as error:
            await reply(send, error.status_code, error.to_body(), _pairs(error.headers()))
            return
        if principal is None:
            body = body_of(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )
            await reply(send, 401, body, [(b"www-authenticate", b"Bearer")])
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        limits: dict[str, str] = {}
        state["ratelimit"] = limits

        async def with_limits(message: Message) -> None:
            if message["type"] == "http.response.start" and limits:
                message["headers"] = [*message.get("headers", []), *_pairs(limits)]
            await send(message)

        await self.app(scope, receive, with_limits)

    async def _principal(self, scope: Scope) -> Principal | None:
        token = _bearer(scope)
        if token is None:
            return None
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(token, key)
        if matched:
            if scope["path"].startswith("/admin"):
                raise PermissionDenied(
                    "the admin API needs an admin key (pampero keys create --admin)"
                )
            return Principal(key=None)
        accounts: Accounts | None = getattr(scope["app"].state, "accounts", None)
        if accounts is None:
            raise AccountsUnavailable("the accounts database is not open yet")
        try:
            secret = token.decode()
        except UnicodeDecodeError:
            return None
        found = await accounts.authenticate(secret)
        if found is None or found.usable(time.time()) is not None:
            return None
        path = scope["path"]
        if found.admin and path in INFERENCE_PATHS:
            raise PermissionDenied("admin keys cannot call inference; use a regular key")
        if not found.admin and path.startswith("/admin"):
            raise PermissionDenied("the admin API needs an admin key")
        return Principal(key=found)


def _pairs(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers.items()]


class Meter:
    """One request's admission ticket, settled when the request ends however it ends."""

    def __init__(
        self,
        accounts: Accounts | None = None,
        ticket: Ticket | None = None,
        *,
        prompt_estimate: int = 0,
        strip_usage: bool = False,
    ) -> None:
        self.accounts = accounts
        self.ticket = ticket
        self.prompt_estimate = prompt_estimate
        self.strip_usage = strip_usage

    def context(self, context: RequestContext) -> RequestContext:
        if self.ticket is None:
            return context
        key = self.ticket.key
        priority = key.priority if key.priority is not None else context.priority
        return dataclasses.replace(context, caller=key.id, priority=priority)

    async def run(self, work: Awaitable[R | None]) -> R | None:
        """Await the backend's reply (a chat or completions ``Reply``, or a ``ResponsesReply``);
        settle it now (a whole body), or when its stream of chunks or events ends."""
        reply = await self._guard(work)
        if self.ticket is None:
            return reply
        if reply is None:
            self._settle(Outcome("disconnected", prompt_tokens=self.prompt_estimate))
        elif isinstance(reply, Reply) and reply.stream is not None:
            reply.stream = self._watch(reply.stream, self._note_chunk)
        elif isinstance(reply, ResponsesReply) and reply.events is not None:
            reply.events = self._watch(reply.events, _note_event)
        else:
            self._settle_usage("completed", reply.body or {})
        return reply

    async def _guard(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except BaseException:
            self._settle(Outcome("failed"))
            raise

    async def _watch(
        self, items: AsyncIterator[I], note: Callable[[I, dict[str, Any]], bool]
    ) -> AsyncIterator[I]:
        """Pass the stream on (what ``note`` keeps), noting its id and usage into ``seen``;
        settle when it ends: completed, failed, or the client gone."""
        seen: dict[str, Any] = {}
        status = "disconnected"
        passed = 0
        try:
            async for item in items:
                if not note(item, seen):
                    continue
                passed += 1
                yield item
            status = "completed"
        except Exception:
            status = "failed"
            raise
        finally:
            self._settle_usage(status, seen, completion_estimate=passed)
            # The stream owns engine requests: closing it (not just leaving the loop over
            # it) is what aborts them when the client has gone.
            closer = getattr(items, "aclose", None)
            if closer is not None:
                await closer()

    def _note_chunk(self, chunk: Chunk, seen: dict[str, Any]) -> bool:
        """A chat or completions chunk: its id and usage; the usage the client did not ask
        for (asked for here, to bill it) is taken out."""
        seen["id"] = chunk.get("id")
        if chunk.get("usage"):
            seen["usage"] = chunk.get("usage")
        if self.strip_usage:
            if not chunk.get("choices") and chunk.get("usage"):
                return False
            chunk.pop("usage", None)
        return True

    def _settle_usage(
        self, status: str, body: Mapping[str, Any], *, completion_estimate: int = 0
    ) -> None:
        found = body.get("usage")
        if isinstance(found, Mapping):
            outcome = _outcome(status, found)
            provider = body.get("provider")
            outcome.provider = provider if isinstance(provider, str) else None
        else:  # ended before its usage arrived: the prompt bound and what was streamed
            outcome = Outcome(
                status,
                prompt_tokens=self.prompt_estimate,
                completion_tokens=completion_estimate if status != "failed" else 0,
            )
        if self.ticket is not None and isinstance(body.get("id"), str):
            self.ticket.request_id = body["id"]
        self._settle(outcome)

    def _settle(self, outcome: Outcome) -> None:
        if self.accounts is not None and self.ticket is not None:
            self.accounts.settle(self.ticket, outcome)


def _note_event(event: dict[str, Any], seen: dict[str, Any]) -> bool:
    """A Responses event: the response it carries once that has its usage (id, provider)."""
    response = event.get("response")
    if isinstance(response, dict) and response.get("usage"):
        seen.clear()
        seen.update(response)
    return True


def _outcome(status: str, usage_body: Mapping[str, Any]) -> Outcome:
    """Chat / completions usage (prompt_tokens) or Responses usage (input_tokens)."""
    prompt = usage_body.get("prompt_tokens", usage_body.get("input_tokens", 0))
    completion = usage_body.get("completion_tokens", usage_body.get("output_tokens", 0))
    cached = usage_body.get("prompt_tokens_details") or usage_body.get("input_tokens_details") or {}
    reasoning = (
        usage_body.get("completion_tokens_details") or usage_body.get("output_tokens_details") or {}
    )
    cost = usage_body.get("cost")
    return Outcome(
        status,
        prompt_tokens=int(prompt or 0),
        completion_tokens=int(completion or 0),
        cached_tokens=int(cached.get("cached_tokens") or 0),
        reasoning_tokens=int(reasoning.get("reasoning_tokens") or 0),
        cost=math.ceil(round(cost * 1_000_000, 6)) if isinstance(cost, int | float) else None,
    )


def _max_output(fields: Any) -> int | None:
    value = getattr(fields, "max_output_tokens", None)
    if value is None:
        value = getattr(fields, "max_tokens", None)
    return value if isinstance(value, int) else None


def _caller_key(request: Request) -> Key | None:
    """The database key that sent the request, or None (a static key, or no accounts)."""
    principal = principal_of(request)
    return None if principal is None else principal.key


def _allows(key: Key, *names: str) -> bool:
    return not key.models or any(
        fnmatch.fnmatchcase(name, glob) for glob in key.models for name in names
    )


def visible_models(request: Request, listing: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/models`` as the caller may use it: a key with model globs sees only the
    models they allow (by the name listed or the model behind it)."""
    key = _caller_key(request)
    if key is None or not key.models:
        return listing
    data = [entry for entry in listing["data"] if _allows(key, entry["id"], entry["root"])]
    return {**listing, "data": data}


def visible_providers(request: Request, listing: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/providers`` as the caller may use it: each provider's models, as far as the
    caller's key allows them."""
    key = _caller_key(request)
    if key is None or not key.models:
        return listing
    data = [
        {**entry, "models": [name for name in entry["models"] if _allows(key, name)]}
        for entry in listing["data"]
    ]
    return {**listing, "data": data}


def visible_model(request: Request, entry: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/models/{id}``: a model the caller's key may not use does not exist for it."""
    key = _caller_key(request)
    if key is not None and not _allows(key, entry["id"], entry["root"]):
        raise ModelNotFound(f"The model '{entry['id'][:200]}' does not exist", param="model")
    return entry


async def admit(
    request: Request, fields: Any, backend: ChatBackend, body: bytes, *, free: bool = False
) -> Meter:
    """Take the caller's limits for this request (before any backend work), or raise the
    error of the limit that refuses it; a static key or a server without accounts passes.
    A ``free`` request (``/tokenize``, ``/detokenize``) counts against the key's model globs,
    rpm and parallel limits, and costs no money and no tokens per minute."""
    principal = principal_of(request)
    accounts: Accounts | None = getattr(request.app.state, "accounts", None)
    if principal is None or principal.key is None or accounts is None:
        return Meter()
    key = principal.key
    card = backend.card
    model = str(fields.model or card.id)
    if not _allows(key, model, card.id):
        raise PermissionDenied(
            f"the key {key.prefix} may not use the model '{model}'",
            param="model",
            code="model_not_allowed",
        )
    headers: dict[str, str] = request.scope["state"]["ratelimit"]
    if free:
        ticket = await accounts.admit(
            key,
            model=card.id,
            provider=card.provider,
            price=None,
            amount=0,
            tokens=0,
            arrival=time.perf_counter(),
            request_id="",
            headers=headers,
        )
        return Meter(accounts, ticket)
    choices = max(int(getattr(fields, "n", 1) or 1), int(getattr(fields, "best_of", 1) or 1))
    max_output = _max_output(fields)
    completion_bound = (max_output or card.context_length or UNKNOWN_CONTEXT) * choices
    prompt_bound = len(body) + TEMPLATE_TOKENS  # a token is at least one byte of the body
    amount = 0
    if card.price is not None:
        images = body.count(b'"image_url"')
        amount = micro_usd(
            card.price,
            prompt_tokens=prompt_bound,
            completion_tokens=completion_bound,
            images=images,
        )
    tokens = len(body) // 4 + (max_output or 0) * choices
    if key.tpm is not None and tokens > key.tpm:
        raise RateLimited(
            f"the request counts {tokens} tokens (its prompt and max_tokens), more than the "
            f"{key.tpm} tokens per minute key {key.prefix} allows"
        )
    strip = False
    options = getattr(fields, "stream_options", None)
    asks_usage = options is not None and (options.include_usage or options.continuous_usage_stats)
    if getattr(fields, "stream", False) and hasattr(fields, "stream_options") and not asks_usage:
        fields.stream_options = StreamOptions(include_usage=True)
        strip = True
    ticket = await accounts.admit(
        key,
        model=card.id,
        provider=card.provider,
        price=card.price,
        amount=amount,
        tokens=tokens,
        arrival=time.perf_counter(),
        request_id="",
        headers=headers,
    )
    return Meter(accounts, ticket, prompt_estimate=len(body) // 4, strip_usage=strip)


# The key and usage routes.


def enabled_accounts(request: Request) -> Accounts:
    accounts: Accounts | None = getattr(request.app.state, "accounts", None)
    if accounts is None:
        raise NotFoundError(
            "accounts are not enabled on this server: serve with --accounts or --database-url"
        )
    return accounts


def account_key(request: Request) -> Key:
    principal = principal_of(request)
    if principal is None or principal.key is None:
        raise PermissionDenied("this route needs an account key (sk-pam-...), not a static key")
    return principal.key


# Every key and usage route: (path, method, handler in ``account_admin``).
_ROUTES = (
    ("/v1/key", "GET", "own_key"),
    ("/v1/usage", "GET", "own_usage"),
    ("/admin/keys", "GET", "admin_list"),
    ("/admin/keys", "POST", "admin_create"),
    ("/admin/keys/{key_id}", "GET", "admin_show"),
    ("/admin/keys/{key_id}", "DELETE", "admin_revoke"),
    ("/admin/keys/{key_id}/revoke", "POST", "admin_revoke"),
    ("/admin/keys/{key_id}/rotate", "POST", "admin_rotate"),
    ("/admin/keys/{key_id}/disable", "POST", "admin_disable"),
    ("/admin/keys/{key_id}/enable", "POST", "admin_enable"),
)


def account_routes(enabled: bool) -> list[BaseRoute]:
    """The key and usage routes. Without accounts each answers 404 and the database layer
    (SQLAlchemy: ~300 ms and ~37 MB) is never imported."""
    if not enabled:
        return [Route(path, _not_enabled, methods=[method]) for path, method, _ in _ROUTES]
    from pampero.api import account_admin

    return [
        Route(path, getattr(account_admin, name), methods=[method])
        for path, method, name in _ROUTES
    ]


async def _not_enabled(request: Request) -> Response:
    enabled_accounts(request)  # raises: this server has no accounts
    raise AssertionError("unreachable")
