"""The ASGI app factory: long-lived services are built in the lifespan and hung on app.state.

Layers, outermost first: request metrics (and the quiet end of a client that left mid-body),
header count cap, CORS, the drain gate (``api/lifecycle.py``), bearer auth, body size cap,
routing, and the one exception translation into OpenAI's error body (``pampero.api.errors``).
CORS sits outside auth because browsers send preflights without the key, and so that a 401
still reaches the page that caused it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pampero.api.access_log import AccessLog
from pampero.api.accounts import AccountAuth, account_routes
from pampero.api.body_timeout import BodyTimeout
from pampero.api.cors import Cors
from pampero.api.errors import on_http_error, on_pampero_error, on_unexpected
from pampero.api.lifecycle import DrainGate, Lifecycle
from pampero.api.middleware import BearerAuth, BodyLimit, HeaderLimit, open_paths
from pampero.api.openapi import openapi_routes
from pampero.api.routes import route_paths, routes
from pampero.backends import BackendEnvironment
from pampero.backends.catalogue import Catalogue
from pampero.errors import PamperoError
from pampero.media import ImageSource, MediaPolicy
from pampero.observability import Metrics
from pampero.responses import ResponsesService, ResponseStore
from pampero.serving.context import ServingContext
from pampero.serving.hub import ModelHub
from pampero.serving.services import Services
from pampero.serving.structured import Constraints
from pampero.settings import Settings
from pampero.web import web_routes

# Not an HTTP status anyone receives: nginx's name for "the client closed the request", so a
# request whose client left before it was answered is counted apart from real errors.
CLIENT_CLOSED = 499

log = logging.getLogger(__name__)


class RequestCounter:
    """Counts answered requests by route and status (unknown paths count as 'other').

    A client that disconnects while sending its body (Starlette raises ``ClientDisconnect``
    from ``request.body()``) is not an error of ours: nobody is left to answer, so it ends
    here, quietly, counted as 499."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.paths = route_paths()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        except ClientDisconnect:
            status[0] = CLIENT_CLOSED
        finally:
            services: Services | None = getattr(scope["app"].state, "services", None)
            if services is not None:
                path = scope["path"]
                if path.startswith("/v1/models/"):
                    path = "/v1/models/{model_id}"
                elif path.startswith(("/v1/responses/", "/responses/")):
                    path = path[: path.index("responses/") + 10] + "{response_id}"
                elif path not in self.paths:
                    path = "other"
                services.context.metrics.requests.labels(path, str(status[0])).inc()


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub = ModelHub(settings)
        await hub.start()
        constraints = Constraints.from_settings(settings)
        context = ServingContext(
            hub=hub,
            metrics=Metrics(hub.stats),
            settings=settings,
            constraints=constraints,
            images=ImageSource(max_concurrency=settings.media_max_concurrency),
            media_policy=MediaPolicy.from_settings(settings),
        )
        services = Services.build(context)
        app.state.services = services
        app.state.catalogue = Catalogue.build(
            BackendEnvironment(settings, services), settings.backends
        )
        lifecycle.on_deadline.append(hub.halt)
        app.state.gateway = None
        if settings.upstreams:  # the gateway: upstream providers beside the local models
            from pampero.gateway import Gateway

            app.state.gateway = await Gateway.start(
                settings, app.state.catalogue, context.metrics.registry
            )
            app.state.catalogue = app.state.gateway.catalogue
        app.state.responses = ResponsesService(
            app.state.catalogue,
            ResponseStore(
                max_items=settings.responses_store_items,
                max_bytes=settings.responses_store_bytes,
            ),
        )
        accounts_url = settings.accounts_database
        if accounts_url is not None:
            from pampero.accounts import Accounts

            app.state.accounts = Accounts.connect(accounts_url, lease=settings.accounts_lease)
            await app.state.accounts.start()
        # Importing and preparing a grammar backend takes a second or more, in this process and
        # in the compile workers: done before the server reports ready, since done while
        # serving it takes CPU from the first streams' decoding (10% slower on two cores). Only
        # the backends the settings name (by default auto's first), so that no heavy library
        # (xgrammar brings torch) is loaded before a request or a setting asks for it.
        try:
            try:
                await constraints.warm_up(list(hub), settings.constraint_warm_up)
            except Exception:  # a backend that cannot be prepared fails the requests needing it
                log.warning("preparing the structured-output backends failed", exc_info=True)
            yield
        finally:
            await constraints.aclose()
            if app.state.gateway is not None:
                await app.state.gateway.close()
            await hub.stop()
            if accounts_url is not None:
                await app.state.accounts.stop()

    lifecycle = Lifecycle(settings.drain_timeout)
    app = Starlette(
        routes=[
            *routes(),
            *account_routes(settings.accounts_database is not None),
            *openapi_routes(),
            *web_routes(),
        ],
        lifespan=lifespan,
        middleware=[
            Middleware(AccessLog),
            Middleware(RequestCounter),
            Middleware(
                HeaderLimit,
                max_count=settings.max_header_count,
                max_bytes=settings.max_header_bytes,
            ),
            Middleware(Cors, origins=settings.cors_origins),
            Middleware(DrainGate, lifecycle=lifecycle),
            Middleware(AccountAuth, keys=settings.api_keys, open_paths=open_paths(settings))
            if settings.accounts_database is not None
            else Middleware(BearerAuth, keys=settings.api_keys, open_paths=open_paths(settings)),
            Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
            Middleware(BodyTimeout, seconds=settings.body_timeout),
        ],
        exception_handlers={
            PamperoError: on_pampero_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )
    app.state.lifecycle = lifecycle
    return app
