"""``pampero keys ...``: the admin operations on the database a server uses.

Each command applies the migrations first, so it works on a new database as well.

The arguments are defined in ``parser.py`` (loaded by every ``pampero`` command; this module
loads the database layer). Example::

    pampero keys create --name equipo-datos --models 'qwen*' --rpm 60 --budget 5 \\
        --budget-reset monthly
    pampero keys list
    pampero keys rotate sk-pam-Ab12Cd34 --overlap 1h
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from pampero.accounts.database import Database
from pampero.accounts.keys import (
    Key,
    KeySpec,
    create_key,
    get_key,
    list_keys,
    parse_expiry,
    revoke_key,
    rotate_key,
    set_disabled,
)
from pampero.accounts.usage import reconcile
from pampero.errors import PamperoError


def run(args: argparse.Namespace, url: str) -> int:
    action = _ACTIONS[args.keys_command]
    try:
        asyncio.run(_with_database(url, lambda database: action(database, args)))
    except PamperoError as exc:
        print(f"pampero keys: {exc.message}")
        return 1
    return 0


async def _with_database(url: str, work: Callable[[Database], Awaitable[None]]) -> None:
    database = Database.connect(url)
    try:
        await database.migrate()
        await work(database)
    finally:
        await database.close()


def _models(values: list[str]) -> list[str]:
    return [glob.strip() for value in values for glob in value.split(",") if glob.strip()]


async def _create(database: Database, args: argparse.Namespace) -> None:
    given = {name: getattr(args, name) for name in KeySpec.GIVEN}
    spec = KeySpec.given(
        **{**given, "models": _models(args.models), "metadata": json.loads(args.metadata)}
    )
    key, secret = await create_key(database, spec)
    _print_secret(key, secret, args.json)


def _print_secret(key: Key, secret: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"data": key.public(), "key": secret}))
        return
    print(f"key {key.id} ({key.prefix}...): save this secret now; it is not shown again:")
    print(secret)


async def _list(database: Database, args: argparse.Namespace) -> None:
    keys = await list_keys(database)
    if args.json:
        print(json.dumps({"object": "list", "data": [key.public() for key in keys]}))
        return
    print(f"{'ID':<21} {'PREFIX':<16} {'STATUS':<8} {'SPEND':>12} {'BUDGET':>12}  NAME")
    for key in keys:
        row = key.public()
        budget = "-" if row["budget"] is None else f"${row['budget']:.6f}"
        spend = f"${row['spend']:.6f}"
        print(
            f"{key.id:<21} {key.prefix:<16} {row['status']:<8} {spend:>12} {budget:>12}  {key.name}"
        )


async def _show(database: Database, args: argparse.Namespace) -> None:
    key = await get_key(database, args.key)
    _print_key(key, args.json)


def _print_key(key: Key, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"data": key.public()}))
        return
    for name, value in key.public().items():
        print(f"{name}: {value}")


async def _revoke(database: Database, args: argparse.Namespace) -> None:
    _print_key(await revoke_key(database, args.key), args.json)


async def _disable(database: Database, args: argparse.Namespace) -> None:
    _print_key(await set_disabled(database, args.key, True), args.json)


async def _enable(database: Database, args: argparse.Namespace) -> None:
    _print_key(await set_disabled(database, args.key, False), args.json)


async def _rotate(database: Database, args: argparse.Namespace) -> None:
    text = args.overlap.strip()
    overlap = float(text) if text.replace(".", "", 1).isdigit() else None
    if overlap is None:
        now = time.time()
        until = parse_expiry(text, now)
        overlap = 0.0 if until is None else until - now
    key, secret = await rotate_key(database, args.key, overlap=overlap)
    _print_secret(key, secret, args.json)


async def _reconcile(database: Database, args: argparse.Namespace) -> None:
    corrections = await reconcile(database)
    for fix in corrections:
        print(f"{fix.key_id} ({fix.prefix}): {fix.counter} {fix.was} -> {fix.now}")
    print(f"reconciled: {len(corrections)} counter(s) corrected; daily usage rebuilt")


_ACTIONS: dict[str, Callable[[Database, argparse.Namespace], Awaitable[None]]] = {
    "create": _create,
    "list": _list,
    "show": _show,
    "revoke": _revoke,
    "disable": _disable,
    "enable": _enable,
    "rotate": _rotate,
    "reconcile": _reconcile,
}
