"""``/openapi.json`` (generated from the routes and the protocol models), ``/docs`` and the
playground's static files, in process over the fake engine; a keyed app serves them all
without a key while the API still answers 401."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route
from starlette.testclient import TestClient

from pampero.api.app import create_app
from pampero.api.openapi import OPERATIONS, openapi_document
from pampero.api.routes import routes
from pampero.protocol import ChatCompletionRequest
from pampero.settings import ModelConfig, Settings
from pampero.web import STATIC

KEY = "sk-openapi-test"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        models=[ModelConfig(id="fake", engine="tests.fake_engine:create")],
        home=tmp_path_factory.mktemp("home"),
        n_ctx=256,
        api_keys=[KEY],
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_the_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip(
        "openapi_spec_validator", reason="openapi-spec-validator is in the dev extra"
    )
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    validator.validate(document)


def test_every_route_is_documented_with_its_methods() -> None:
    documented = {
        (path, method) for path, item in openapi_document()["paths"].items() for method in item
    }
    served = set()
    for route in routes():
        assert isinstance(route, Route)
        assert route.endpoint in OPERATIONS, f"{route.path} is missing from OPERATIONS"
        for method in (route.methods or set()) - {"HEAD"}:
            served.add((route.path.replace(":path}", "}"), method.lower()))
    assert documented == served
    ids = [
        op["operationId"] for item in openapi_document()["paths"].values() for op in item.values()
    ]
    assert len(ids) == len(set(ids))


def schema_validator(name: str) -> jsonschema.protocols.Validator:
    """A validator for one component, its $refs resolved inside the document."""
    document = openapi_document()
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"urn:openapi#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_the_chat_schema_is_the_request_model_with_vllms_extras() -> None:
    schema = openapi_document()["components"]["schemas"]["ChatCompletionRequest"]
    assert set(schema["properties"]) == set(ChatCompletionRequest.model_fields)
    assert {"top_k", "min_p", "repetition_penalty", "guided_json", "structured_outputs"} <= set(
        schema["properties"]
    )
    assert set(schema["required"]) == {"model", "messages"}


def test_a_rich_request_validates_and_a_broken_one_does_not() -> None:
    validator = schema_validator("ChatCompletionRequest")
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    rich = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]},
        ],
        "max_tokens": 8,
        "top_k": 20,
        "repetition_penalty": 1.1,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    validator.validate(rich)
    ChatCompletionRequest.model_validate(rich)  # the model agrees
    for broken in ({"model": "m"}, {**rich, "max_tokens": 0}, {**rich, "top_k": "many"}):
        assert not validator.is_valid(broken)


def test_replies_have_schemas_that_real_answers_meet(client: TestClient) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    answer = client.post("/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    schema_validator("ChatCompletion").validate(answer.json())
    models = client.get("/v1/models", headers=headers).json()
    schema_validator("ModelList").validate(models)
    refused = client.post("/v1/chat/completions", json={"model": "fake"}, headers=headers)
    assert refused.status_code == 400
    schema_validator("ErrorResponse").validate(refused.json())


def test_pages_assets_and_the_document_need_no_key_but_the_api_does(client: TestClient) -> None:
    assert client.get("/v1/models").status_code == 401
    assert client.get("/openapi.json").json() == openapi_document()
    for path in ("/", "/playground", "/docs"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    for path in (
        "/static/playground/main.js",
        "/static/playground/style.css",
        "/static/swagger/swagger-ui-bundle.js",
        "/static/swagger/LICENSE",
    ):
        assert client.get(path).status_code == 200, path
    assert client.get("/static/nothing-here.js").status_code == 404
    assert client.get("/static/../v1/models").status_code in (401, 404)


def test_the_pages_load_nothing_from_another_origin() -> None:
    for page in STATIC.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, page
    for module in (STATIC / "playground").glob("*.js"):
        text = module.read_text(encoding="utf-8")
        assert "https://" not in text.replace("http://www.w3.org/2000/svg", ""), module
    assert "Apache License" in (STATIC / "swagger" / "LICENSE").read_text(encoding="utf-8")
