"""HTTP routes: parse the body, call the use case, shape the response. Nothing else."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pampero.api.accounts import admit, visible_model, visible_models, visible_providers
from pampero.api.sse import EventStreamResponse, ResponsesFraming
from pampero.backends import ChatBackend, RequestContext
from pampero.backends.catalogue import Catalogue
from pampero.errors import EngineNotReady, ModelNotFound, UnsupportedParameter
from pampero.protocol import (
    parse_chat_request,
    parse_completion_request,
    parse_detokenize_request,
    parse_tokenize_request,
)
from pampero.protocol.common import GenerationFields
from pampero.protocol.replies import Reply
from pampero.responses import ResponsesReply, ResponsesService, parse_response_request
from pampero.serving.services import Services

if TYPE_CHECKING:
    from pampero.gateway import Gateway

T = TypeVar("T")
_JSON = "application/json"


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _catalogue(request: Request) -> Catalogue:
    catalogue: Catalogue = request.app.state.catalogue
    return catalogue


def _backend_for(request: Request, fields: GenerationFields) -> ChatBackend:
    """The backend serving ``fields.model``; a field it cannot honour is a 400 naming it."""
    backend = _catalogue(request).resolve(fields.model)
    for name in backend.unsupported(fields):
        raise UnsupportedParameter(
            f"'{name}' is not supported by the model '{backend.card.id}'", param=name
        )
    return backend


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T | None:
    """Run ``work``; cancel it (aborting its engine request) if the client goes away first.
    ``work`` runs in this task; only the watcher gets one (a task per request is measurable
    on the gateway's path)."""
    this = asyncio.current_task()
    assert this is not None
    receive = request.receive
    left = False

    async def watch() -> None:
        nonlocal left
        while (await receive())["type"] != "http.disconnect":
            pass
        left = True
        this.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        result = await work
    except asyncio.CancelledError:
        if not left or this.uncancel() > 0:
            raise  # cancelled by someone else too (the server stopping)
        return None
    finally:
        watcher.cancel()
    if left:  # work ended anyway (it absorbed the cancellation); nobody is listening
        this.uncancel()
        return None
    return result


def _respond(reply: Reply | None) -> Response:
    if reply is None:  # nobody is listening; the status is for the access log
        return Response(status_code=499)
    if reply.stream is not None:
        return EventStreamResponse(reply.stream, headers=reply.headers)  # type: ignore[return-value]
    return JSONResponse(reply.body, headers=reply.headers)


async def chat_completions(request: Request) -> Response:
    context = RequestContext(arrival=time.perf_counter())
    body = await request.body()
    parsed = parse_chat_request(body, strict=_services(request).context.settings.strict_params)
    backend = _chat_backend(request, parsed.request)
    meter = await admit(request, parsed.request, backend, body)
    context = meter.context(context)
    if getattr(backend, "holds_stream", False):  # a router: see _chat_backend
        context = _with_session(request, context)
        return _gateway_respond(
            await meter.run(_until_disconnect(request, backend.chat(parsed, context)))
        )
    work = backend.chat(parsed, context)
    if parsed.request.stream:
        return _respond(await meter.run(work))
    return _respond(await meter.run(_until_disconnect(request, work)))


def _with_session(request: Request, context: RequestContext) -> RequestContext:
    """``context`` with the session key for provider affinity (``session_header``)."""
    header = _services(request).context.settings.session_header
    return dataclasses.replace(context, session=request.headers.get(header))


def _gateway_respond(reply: Reply | None) -> Response:
    if reply is not None and reply.body is not None:  # the gateway's answers: orjson
        return Response(orjson.dumps(reply.body), headers=reply.headers, media_type=_JSON)
    return _respond(reply)


def _chat_backend(request: Request, fields: GenerationFields) -> ChatBackend:
    """The backend of a chat request. With upstreams the catalogue holds the gateway's routers;
    without, a request naming ``provider`` or ``models`` goes through routers over the local
    models (built on first use), and every other request straight to its local backend. A
    router holds a stream back until it commits, so the edge watches for a disconnect also
    while a streamed request is waiting for its first token."""
    if request.app.state.gateway is None and (
        "provider" in fields.model_fields_set or fields.models
    ):
        backend: ChatBackend = _local_gateway(request).catalogue.resolve(fields.model)
        return backend
    return _backend_for(request, fields)


def _local_gateway(request: Request) -> Gateway:
    state = request.app.state
    gateway: Gateway | None = getattr(state, "local_gateway", None)
    if gateway is None:
        from pampero.gateway import Gateway

        services = _services(request)
        gateway = state.local_gateway = Gateway.local_only(
            services.context.settings, state.catalogue, services.context.metrics.registry
        )
    return gateway


async def completions(request: Request) -> Response:
    context = RequestContext(arrival=time.perf_counter())
    body = await request.body()
    strict = _services(request).context.settings.strict_params
    parsed = parse_completion_request(body, strict=strict)
    backend = _chat_backend(request, parsed.request)
    meter = await admit(request, parsed.request, backend, body)
    context = meter.context(context)
    if getattr(backend, "holds_stream", False):  # a router, as for chat
        context = _with_session(request, context)
        return _gateway_respond(
            await meter.run(_until_disconnect(request, backend.complete(parsed, context)))
        )
    work = backend.complete(parsed, context)
    if parsed.request.stream:
        return _respond(await meter.run(work))
    return _respond(await meter.run(_until_disconnect(request, work)))


def _responses(request: Request) -> ResponsesService:
    service: ResponsesService = request.app.state.responses
    return service


async def create_response(request: Request) -> Response:
    context = RequestContext(arrival=time.perf_counter())
    body = await request.body()
    parsed = parse_response_request(body, strict=_services(request).context.settings.strict_params)
    meter = await admit(
        request, parsed.request, _catalogue(request).resolve(parsed.request.model), body
    )
    work = _responses(request).create(parsed, _with_session(request, meter.context(context)))
    reply: ResponsesReply | None
    if parsed.request.stream:
        reply = await meter.run(work)
    else:
        reply = await meter.run(_until_disconnect(request, work))
    if reply is None:
        return Response(status_code=499)
    if reply.events is not None:
        return EventStreamResponse(  # type: ignore[return-value]
            reply.events, headers=reply.headers, framing=ResponsesFraming()
        )
    return JSONResponse(reply.body, headers=reply.headers)


async def get_response(request: Request) -> Response:
    return JSONResponse(_responses(request).get(request.path_params["response_id"]))


async def list_input_items(request: Request) -> Response:
    query = {key: request.query_params.getlist(key) for key in request.query_params}
    items = _responses(request).input_items(request.path_params["response_id"], query)
    return JSONResponse(items)


async def delete_response(request: Request) -> Response:
    return JSONResponse(_responses(request).delete(request.path_params["response_id"]))


async def tokenize(request: Request) -> Response:
    services = _services(request)
    body = await request.body()
    parsed = parse_tokenize_request(body, strict=services.context.settings.strict_params)
    router = _token_router(request, parsed.request.model)
    if router is None:
        return await _free(request, parsed.request, body, lambda: services.tokens.tokenize(parsed))
    meter = await admit(request, parsed.request, router, body, free=True)
    context = _with_session(request, RequestContext(arrival=time.perf_counter()))
    work = _until_disconnect(request, router.tokenize(parsed, context))
    return _gateway_respond(await meter.run(work))


async def detokenize(request: Request) -> Response:
    services = _services(request)
    body = await request.body()
    parsed = parse_detokenize_request(body, strict=services.context.settings.strict_params)
    router = _token_router(request, parsed.request.model)
    if router is None:
        return await _free(
            request, parsed.request, body, lambda: services.tokens.detokenize(parsed)
        )
    meter = await admit(request, parsed.request, router, body, free=True)
    context = _with_session(request, RequestContext(arrival=time.perf_counter()))
    work = _until_disconnect(request, router.detokenize(parsed, context))
    return _gateway_respond(await meter.run(work))


async def _free(request: Request, fields: Any, body: bytes, work: Callable[[], Reply]) -> Response:
    """A request that costs nothing but counts against the caller's rpm and model globs."""
    served = _services(request).tokens.model_id(fields.model)
    meter = await admit(request, fields, _catalogue(request).resolve(served), body, free=True)

    async def answer() -> Reply:
        return work()

    return _respond(await meter.run(answer()))


def _token_router(request: Request, model: str | None) -> ChatBackend | None:
    """With upstreams, the router of ``model`` (tokens go to one of its providers, local or
    upstream); None: local serving answers. Without a model, as vLLM: the first local model,
    else (a pure gateway) the first model served."""
    gateway: Gateway | None = request.app.state.gateway
    if gateway is None:
        return None
    if model is None:
        if next(iter(_services(request).context.hub), None) is not None:
            return None
        first = next(iter(gateway.catalogue), None)
        if first is None:
            raise ModelNotFound("No model is served yet.", param="model")
        return first
    return gateway.catalogue.resolve(model)


async def list_models(request: Request) -> Response:
    gateway = request.app.state.gateway
    listing = gateway.models_list() if gateway is not None else _catalogue(request).models_list()
    return JSONResponse(visible_models(request, listing))


async def list_providers(request: Request) -> Response:
    """Each provider's models, health, cooldown and observed speed (the gateway's view)."""
    gateway: Gateway = request.app.state.gateway or _local_gateway(request)
    return JSONResponse(visible_providers(request, gateway.providers()))


async def get_model(request: Request) -> Response:
    entry = _catalogue(request).model_object(request.path_params["model_id"])
    return JSONResponse(visible_model(request, entry))


async def health(request: Request) -> Response:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None or not services.context.hub.alive():
        raise EngineNotReady("the engine is not running")
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    data = _services(request).context.metrics.render()
    return Response(data, media_type="text/plain; version=0.0.4; charset=utf-8")


async def version(_request: Request) -> Response:
    from pampero import __version__

    return JSONResponse({"version": __version__})


Endpoint = Callable[[Request], Awaitable[Response]]

_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions", "/functions/v1/chat/completions")


def routes() -> list[BaseRoute]:
    table: list[tuple[str, Endpoint, list[str]]] = [
        *((path, chat_completions, ["POST"]) for path in _CHAT_PATHS),
        ("/v1/completions", completions, ["POST"]),
        ("/completions", completions, ["POST"]),
        ("/v1/responses", create_response, ["POST"]),
        ("/responses", create_response, ["POST"]),
        ("/v1/responses/{response_id}", get_response, ["GET"]),
        ("/responses/{response_id}", get_response, ["GET"]),
        ("/v1/responses/{response_id}", delete_response, ["DELETE"]),
        ("/responses/{response_id}", delete_response, ["DELETE"]),
        ("/v1/responses/{response_id}/input_items", list_input_items, ["GET"]),
        ("/responses/{response_id}/input_items", list_input_items, ["GET"]),
        ("/v1/models", list_models, ["GET"]),
        ("/v1/models/{model_id:path}", get_model, ["GET"]),
        ("/v1/providers", list_providers, ["GET"]),
        ("/tokenize", tokenize, ["POST"]),
        ("/v1/tokenize", tokenize, ["POST"]),
        ("/detokenize", detokenize, ["POST"]),
        ("/v1/detokenize", detokenize, ["POST"]),
        ("/health", health, ["GET"]),
        ("/metrics", metrics, ["GET"]),
        ("/version", version, ["GET"]),
    ]
    return [Route(path, endpoint, methods=methods) for path, endpoint, methods in table]


def route_paths() -> frozenset[str]:
    paths: set[str] = set()
    for route in routes():
        path: Any = getattr(route, "path", "")
        paths.add(str(path))
    return frozenset(paths)
