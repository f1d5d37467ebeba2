"""The key and usage routes (``/v1/key``, ``/v1/usage``, ``/admin/keys...``) of a server with
accounts; ``accounts.account_routes`` mounts them only then (this module loads the database
layer)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pampero.accounts.keys import (
    KeySpec,
    create_key,
    get_key,
    list_keys,
    revoke_key,
    rotate_key,
    set_disabled,
)
from pampero.accounts.usage import key_summary, usage
from pampero.api.accounts import account_key, enabled_accounts
from pampero.errors import InvalidRequestError, PermissionDenied

M = TypeVar("M", bound=BaseModel)


async def own_key(request: Request) -> Response:
    accounts = enabled_accounts(request)
    key = await get_key(accounts.database, account_key(request).id)
    return JSONResponse(key_summary(key))


async def own_usage(request: Request) -> Response:
    accounts = enabled_accounts(request)
    caller = account_key(request)
    params = request.query_params
    key_id: str | None = caller.id
    if caller.admin:
        wanted = params.get("key")
        key_id = None if wanted is None else (await get_key(accounts.database, wanted)).id
    elif params.get("key") not in (None, caller.id, caller.prefix):
        raise PermissionDenied("only admin keys may read another key's usage", param="key")
    body = await usage(
        accounts.database,
        start=params.get("start"),
        end=params.get("end"),
        key_id=key_id,
        show_keys=caller.admin,
    )
    return JSONResponse(body)


class KeyCreate(BaseModel):
    """The body of ``POST /admin/keys``: money in USD, ``expires`` as ISO time or ``30d``."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    models: list[str] = Field(default_factory=list)
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    parallel: int | None = Field(default=None, ge=0)
    budget: float | None = Field(default=None, ge=0)
    budget_reset: str = "none"
    expires: str | float | None = None
    priority: int | None = None
    admin: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)

    def spec(self) -> KeySpec:
        return KeySpec.given(**self.model_dump())


def _parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or None
        raise InvalidRequestError(f"{where or 'body'}: {error['msg']}", param=where) from None


async def admin_create(request: Request) -> Response:
    accounts = enabled_accounts(request)
    spec = _parse(KeyCreate, await request.body()).spec()
    key, secret = await create_key(accounts.database, spec)
    return JSONResponse({"data": key.public(), "key": secret}, status_code=201)


async def admin_list(request: Request) -> Response:
    keys = await list_keys(enabled_accounts(request).database)
    return JSONResponse({"object": "list", "data": [key.public() for key in keys]})


async def admin_show(request: Request) -> Response:
    key = await get_key(enabled_accounts(request).database, request.path_params["key_id"])
    return JSONResponse({"data": key.public()})


async def admin_revoke(request: Request) -> Response:
    key = await revoke_key(enabled_accounts(request).database, request.path_params["key_id"])
    return JSONResponse({"data": key.public()})


async def admin_disable(request: Request) -> Response:
    key = await set_disabled(
        enabled_accounts(request).database, request.path_params["key_id"], True
    )
    return JSONResponse({"data": key.public()})


async def admin_enable(request: Request) -> Response:
    key = await set_disabled(
        enabled_accounts(request).database, request.path_params["key_id"], False
    )
    return JSONResponse({"data": key.public()})


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap: float = Field(default=0.0, ge=0, description="Seconds the old secret still works.")


async def admin_rotate(request: Request) -> Response:
    overlap = _parse(KeyRotate, await request.body()).overlap
    key, secret = await rotate_key(
        enabled_accounts(request).database, request.path_params["key_id"], overlap=overlap
    )
    return JSONResponse({"data": key.public(), "key": secret})
