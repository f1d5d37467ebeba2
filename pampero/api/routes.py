"""HTTP routes: parse the body, call the use case, shape the response. Nothing else."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pampero.api.sse import EventStreamResponse, ResponsesFraming
from pampero.backends import ChatBackend, RequestContext
from pampero.backends.catalogue import Catalogue
from pampero.errors import EngineNotReady, UnsupportedParameter
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

T = TypeVar("T")


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
    """Run ``work``; cancel it (aborting its engine request) if the client goes away first."""
    task = asyncio.ensure_future(work)
    receive = request.receive

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    return task.result()


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
    work = _backend_for(request, parsed.request).chat(parsed, context)
    if parsed.request.stream:
        return _respond(await work)
    return _respond(await _until_disconnect(request, work))


async def completions(request: Request) -> Response:
    context = RequestContext(arrival=time.perf_counter())
    body = await request.body()
    strict = _services(request).context.settings.strict_params
    parsed = parse_completion_request(body, strict=strict)
    work = _backend_for(request, parsed.request).complete(parsed, context)
    if parsed.request.stream:
        return _respond(await work)
    return _respond(await _until_disconnect(request, work))


def _responses(request: Request) -> ResponsesService:
    service: ResponsesService = request.app.state.responses
    return service


async def create_response(request: Request) -> Response:
    context = RequestContext(arrival=time.perf_counter())
    body = await request.body()
    parsed = parse_response_request(body, strict=_services(request).context.settings.strict_params)
    work = _responses(request).create(parsed, context)
    reply: ResponsesReply | None
    reply = await work if parsed.request.stream else await _until_disconnect(request, work)
    if reply is None:
        return Response(status_code=499)
    if reply.events is not None:
        return EventStreamResponse(  # type: ignore[return-value]
            reply.events, headers=reply.headers, framing=ResponsesFraming()
        )
    return JSONResponse(reply.body, headers=reply.headers)


async def get_response(request: Request) -> Response:
    return JSONResponse(_responses(request).get(request.path_params["response_id"]))


async def delete_response(request: Request) -> Response:
    return JSONResponse(_responses(request).delete(request.path_params["response_id"]))


async def tokenize(request: Request) -> Response:
    services = _services(request)
    parsed = parse_tokenize_request(
        await request.body(), strict=services.context.settings.strict_params
    )
    return _respond(services.tokens.tokenize(parsed))


async def detokenize(request: Request) -> Response:
    services = _services(request)
    parsed = parse_detokenize_request(
        await request.body(), strict=services.context.settings.strict_params
    )
    return _respond(services.tokens.detokenize(parsed))


async def list_models(request: Request) -> Response:
    return JSONResponse(_catalogue(request).models_list())


async def get_model(request: Request) -> Response:
    return JSONResponse(_catalogue(request).model_object(request.path_params["model_id"]))


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
        ("/v1/models", list_models, ["GET"]),
        ("/v1/models/{model_id:path}", get_model, ["GET"]),
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
