"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the routes and the protocol.

The paths and methods come from ``api/routes.py``'s table; each endpoint's request body is the
JSON Schema pydantic generates from its protocol model (``pampero/protocol/``, the Responses
request), and each answer's schema from the typed dicts backends return
(``protocol/replies.py``). Nothing is written by hand but the summaries and the few small
shapes that have no model (the error body, the model list, tokenizer answers).

``OPERATIONS`` names every endpoint the table serves; a route without an entry is a bug that
``tests/unit/test_openapi.py`` catches, so a new endpoint cannot ship undocumented.

Example::

    document = openapi_document()          # built once, then cached
    document["paths"]["/v1/chat/completions"]["post"]["requestBody"]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, NotRequired

from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typing_extensions import TypedDict

from pampero.api import routes as endpoints
from pampero.api.middleware import OPENAPI_PATH
from pampero.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeChatRequest,
    TokenizeCompletionRequest,
)
from pampero.protocol.common import ProtocolModel
from pampero.protocol.replies import ChatCompletion, ChatCompletionChunk, TextCompletion
from pampero.responses.protocol import CreateResponseRequest

REF = "#/components/schemas/{model}"


class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(TypedDict):
    """OpenAI's error body: every 4xx and 5xx pampero sends has this shape."""

    error: ErrorDetail


class ModelObject(TypedDict):
    id: str
    object: str  # "model"
    created: int
    owned_by: str
    root: NotRequired[str]
    parent: NotRequired[str | None]
    max_model_len: NotRequired[int | None]
    context_length: NotRequired[int | None]
    capabilities: NotRequired[dict[str, bool]]


class ModelList(TypedDict):
    object: str  # "list"
    data: list[ModelObject]


class TokenizeResponse(TypedDict):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: NotRequired[list[str] | None]


class DetokenizeResponse(TypedDict):
    prompt: str


class ResponseObject(TypedDict):
    """A Responses API object (its output items are described in OpenAI's reference)."""

    id: str
    object: str  # "response"
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]]
    usage: NotRequired[dict[str, Any] | None]


class Deleted(TypedDict):
    id: str
    object: str
    deleted: bool


class ResponseItemList(TypedDict):
    object: str  # "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ProviderList(TypedDict):
    object: str  # "list"
    data: list[dict[str, Any]]  # id, kind, models, health, cooldown, latency, throughput


class Health(TypedDict):
    status: str


class Version(TypedDict):
    version: str


@dataclass(frozen=True)
class Operation:
    """What the document says about one endpoint."""

    operation_id: str
    summary: str
    tag: str
    request: type[ProtocolModel] | tuple[type[ProtocolModel], ...] | None = None
    response: Any = None  # a TypedDict, or None for a non-JSON answer
    stream: Any = None  # the chunk type sent as server-sent events with "stream": true
    media_type: str = "application/json"


Endpoint = Callable[[Request], Any]

OPERATIONS: dict[Endpoint, Operation] = {
    endpoints.chat_completions: Operation(
        "createChatCompletion",
        "Create a chat completion (OpenAI's fields, vLLM's extras, guided decoding)",
        "chat",
        ChatCompletionRequest,
        ChatCompletion,
        ChatCompletionChunk,
    ),
    endpoints.completions: Operation(
        "createCompletion",
        "Create a text completion (legacy)",
        "completions",
        CompletionRequest,
        TextCompletion,
        TextCompletion,
    ),
    endpoints.create_response: Operation(
        "createResponse",
        "Create a response (OpenAI's Responses API over the same models)",
        "responses",
        CreateResponseRequest,
        ResponseObject,
    ),
    endpoints.get_response: Operation(
        "getResponse", "Get a stored response", "responses", response=ResponseObject
    ),
    endpoints.list_input_items: Operation(
        "listInputItems",
        "List a stored response's input items (paged: after, before, limit, order)",
        "responses",
        response=ResponseItemList,
    ),
    endpoints.delete_response: Operation(
        "deleteResponse", "Delete a stored response", "responses", response=Deleted
    ),
    endpoints.list_models: Operation(
        "listModels",
        "List the models, with context length and capabilities",
        "models",
        response=ModelList,
    ),
    endpoints.get_model: Operation(
        "retrieveModel", "Describe one model (an id or an alias)", "models", response=ModelObject
    ),
    endpoints.list_providers: Operation(
        "listProviders",
        "The gateway's providers: models, health, cooldown, latency, throughput (no secrets)",
        "models",
        response=ProviderList,
    ),
    endpoints.tokenize: Operation(
        "tokenize",
        "Tokenize a prompt or chat messages (vLLM's /tokenize)",
        "tokens",
        (TokenizeCompletionRequest, TokenizeChatRequest),
        TokenizeResponse,
    ),
    endpoints.detokenize: Operation(
        "detokenize",
        "Turn token ids back into text (vLLM's /detokenize)",
        "tokens",
        DetokenizeRequest,
        DetokenizeResponse,
    ),
    endpoints.health: Operation(
        "health", "Liveness: 200 once the engine runs", "server", None, Health
    ),
    endpoints.metrics: Operation(
        "metrics", "Prometheus metrics", "server", media_type="text/plain"
    ),
    endpoints.version: Operation("version", "pampero's version", "server", None, Version),
}

# Statuses every operation may answer, all with OpenAI's error body.
ERRORS = {
    "400": "Invalid request: the message names the field (param)",
    "401": "Missing or invalid API key (servers started with --api-key)",
    "404": "Unknown model or object",
    "413": "Request body too large",
    "429": "Rate limited or the server is overloaded",
    "503": "Not ready or shutting down",
}


def _schemas() -> dict[str, Any]:
    """Every component schema: pydantic's for the request models, TypeAdapter's for replies."""
    requests = [op.request for op in OPERATIONS.values() if op.request is not None]
    models = sorted(
        {m for r in requests for m in (r if isinstance(r, tuple) else (r,))},
        key=lambda m: m.__name__,
    )
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    replies = {op.response for op in OPERATIONS.values()} | {
        op.stream for op in OPERATIONS.values()
    }
    for kind in sorted((r for r in replies if r is not None), key=lambda r: r.__name__):
        schema = TypeAdapter(kind).json_schema(ref_template=REF, mode="serialization")
        schemas.update(schema.pop("$defs", {}))
        schemas[kind.__name__] = schema
    error = TypeAdapter(ErrorResponse).json_schema(ref_template=REF)
    schemas.update(error.pop("$defs", {}))
    schemas["ErrorResponse"] = error
    return schemas


def _ref(kind: Any) -> dict[str, str]:
    return {"$ref": REF.format(model=kind.__name__)}


def _request_body(op: Operation) -> dict[str, Any]:
    kinds = op.request if isinstance(op.request, tuple) else (op.request,)
    schema = _ref(kinds[0]) if len(kinds) == 1 else {"anyOf": [_ref(k) for k in kinds]}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _responses(op: Operation) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if op.response is not None:
        content["application/json"] = {"schema": _ref(op.response)}
    elif op.media_type != "application/json":
        content[op.media_type] = {"schema": {"type": "string"}}
    if op.stream is not None:
        content["text/event-stream"] = {
            "schema": {
                "type": "string",
                "description": f'With "stream": true, one `data: {{{op.stream.__name__}}}` '
                "event per chunk, then `data: [DONE]`; an error after the stream started is "
                'an in-band `data: {"error": ...}` event.',
            }
        }
    answers: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    error = {"application/json": {"schema": _ref(ErrorResponse)}}
    for status, description in ERRORS.items():
        answers[status] = {"description": description, "content": error}
    return answers


def _operation(op: Operation, path: str, method: str, seen: set[str]) -> dict[str, Any]:
    # The same endpoint is served under several paths (/v1/x, /x, /functions/v1/x): each
    # operation id must be unique, so the aliases get the path in theirs.
    operation_id = op.operation_id
    if operation_id in seen:
        operation_id += "_" + "_".join(p for p in path.strip("/").split("/") if "{" not in p)
    seen.add(operation_id)
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": _responses(op),
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_parameters(path)
    ]
    if parameters:
        operation["parameters"] = parameters
    if op.request is not None and method == "post":
        operation["requestBody"] = _request_body(op)
    if path == "/health":
        operation["security"] = []
    return operation


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document (built once: it depends on the code only)."""
    from pampero import __version__

    paths: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for route in endpoints.routes():
        assert isinstance(route, Route)
        op = OPERATIONS.get(route.endpoint)
        if op is None:
            raise KeyError(f"{route.path} has no entry in pampero.api.openapi.OPERATIONS")
        path = route.path.replace(":path}", "}")
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(op, path, method.lower(), seen)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pampero",
            "version": __version__,
            "description": "An OpenAI-compatible server for local language and vision-language "
            "models. Interactive documentation at /docs; a playground at /.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


async def openapi_json(_request: Request) -> Response:
    return JSONResponse(openapi_document())


def openapi_routes() -> list[Route]:
    return [Route(OPENAPI_PATH, openapi_json, methods=["GET"])]
