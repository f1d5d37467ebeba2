"""API keys: what a key allows, how its secret is made and checked, and the admin operations
(create, list, show, revoke, rotate) that ``pampero keys`` and ``/admin/keys`` share.

A secret is ``sk-pam-`` and 43 URL-safe characters (256 random bits); the database keeps its
SHA-256 only, and a short ``prefix`` names the key in lists and logs. Looking a key up by the
hash of what the client sent reveals nothing through timing about any stored secret (the hash
of a guess is unrelated to the hashes it is compared with), and the match is confirmed with a
constant-time comparison.

Example::

    key, secret = await create_key(database, KeySpec(name="equipo-datos", rpm=60))
    print(secret)           # shown once: sk-pam-...
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from sqlalchemy import or_, select, update

from pampero.accounts import window
from pampero.accounts.database import Database, Statement
from pampero.accounts.periods import RESETS, period_bounds
from pampero.accounts.schema import keys
from pampero.accounts.window import Window
from pampero.errors import InvalidRequestError, NotFoundError
from pampero.pricing import usd

SECRET_PREFIX = "sk-pam-"
PREFIX_LENGTH = len(SECRET_PREFIX) + 8


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(value: str | float | None, now: float) -> float | None:
    """An expiry as epoch seconds, from epoch seconds, a duration (``90m``, ``12h``, ``30d``,
    ``2w``) or an ISO date or time (UTC unless it says otherwise)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    if text[:-1].isdigit() and text[-1:] in _UNITS:
        return now + int(text[:-1]) * _UNITS[text[-1]]
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequestError(
            f"'expires' must be an ISO date or time, or a duration like 30d or 12h: {text!r}",
            param="expires",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


@dataclass
class KeySpec:
    """What ``create`` is given; money in micro-USD, times in epoch seconds."""

    name: str = ""
    models: list[str] = field(default_factory=list)
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None
    budget: int | None = None
    budget_reset: str = "none"
    expires_at: float | None = None
    priority: int | None = None
    admin: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    # What a person gives for a new key (``pampero keys create``'s flags, ``POST /admin/keys``'s
    # body): ``given``'s parameters.
    GIVEN: ClassVar[tuple[str, ...]] = (
        "name",
        "models",
        "rpm",
        "tpm",
        "parallel",
        "budget",
        "budget_reset",
        "expires",
        "priority",
        "admin",
        "metadata",
    )

    @classmethod
    def given(
        cls,
        *,
        name: str = "",
        models: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        parallel: int | None = None,
        budget: float | None = None,
        budget_reset: str = "none",
        expires: str | float | None = None,
        priority: int | None = None,
        admin: bool = False,
        metadata: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> KeySpec:
        """A spec from what a person gives: ``budget`` in USD, ``expires`` as epoch seconds,
        an ISO time or a duration (``30d``)."""
        return cls(
            name=name,
            models=list(models or []),
            rpm=rpm,
            tpm=tpm,
            parallel=parallel,
            budget=None if budget is None else round(budget * 1_000_000),
            budget_reset=budget_reset,
            expires_at=parse_expiry(expires, time.time() if now is None else now),
            priority=priority,
            admin=admin,
            metadata=dict(metadata or {}),
        )

    def check(self) -> None:
        for name in ("rpm", "tpm", "parallel", "budget"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidRequestError(f"'{name}' must not be negative", param=name)
        if self.budget_reset not in RESETS:
            raise InvalidRequestError(
                f"'budget_reset' must be one of {', '.join(RESETS)}", param="budget_reset"
            )
        if len(self.name) > 200:
            raise InvalidRequestError("'name' is longer than 200 characters", param="name")


@dataclass(frozen=True)
class Key:
    """One key's settings and counters, as read from the database (never its hash)."""

    id: str
    name: str
    prefix: str
    models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    parallel: int | None
    budget: int | None
    budget_reset: str
    period_start: float
    period_end: float | None
    expires_at: float | None
    disabled: bool
    revoked_at: float | None
    priority: int | None
    admin: bool
    metadata: dict[str, Any]
    created_at: float
    spend: int
    reserved: int
    in_flight: int
    window: Window = field(default_factory=Window)
    old_secret_until: float | None = None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> Key:
        """From a row by column name (SQLAlchemy's, asyncpg's or sqlite3's: booleans come back
        from SQLite as 0 and 1)."""
        return cls(
            **{name: row[name] for name in _PLAIN},
            models=tuple(json.loads(row["models"])),
            metadata=json.loads(row["metadata"]),
            window=Window.of(row),
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "disabled", bool(self.disabled))
        object.__setattr__(self, "admin", bool(self.admin))

    def usable(self, now: float) -> str | None:
        """Why this key cannot be used now, or None."""
        if self.revoked_at is not None:
            return "the API key has been revoked"
        if self.disabled:
            return "the API key is disabled"
        if self.expires_at is not None and self.expires_at <= now:
            return "the API key has expired"
        return None

    def spend_now(self, now: float) -> int:
        """This period's spend (zero once the period has ended, before a request resets it)."""
        if self.period_end is not None and self.period_end <= now:
            return 0
        return self.spend

    def public(self, now: float | None = None) -> dict[str, Any]:
        """The key as the admin API and ``pampero keys show`` present it."""
        now = time.time() if now is None else now
        body = asdict(self)
        body["models"] = list(self.models)
        body["budget"] = None if self.budget is None else usd(self.budget)
        body["spend"] = usd(self.spend_now(now))
        body["reserved"] = usd(self.reserved)
        for name in ("period_start", "window"):
            body.pop(name)
        body["status"] = "active" if self.usable(now) is None else _status(self)
        return body


def _status(key: Key) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.disabled:
        return "disabled"
    return "expired"


_PLAIN = tuple(
    name for name in Key.__dataclass_fields__ if name not in ("models", "metadata", "window")
)


async def create_key(
    database: Database, spec: KeySpec, *, now: float | None = None
) -> tuple[Key, str]:
    """A new key and its secret (the only time the secret exists outside the client)."""
    spec.check()
    now = time.time() if now is None else now
    secret = new_secret()
    start, end = period_bounds(spec.budget_reset, now)
    key_id = "key_" + secrets.token_hex(8)
    values = {
        "id": key_id,
        "name": spec.name,
        "prefix": secret[:PREFIX_LENGTH],
        "secret_hash": hash_secret(secret),
        "models": json.dumps(list(spec.models)),
        "rpm": spec.rpm,
        "tpm": spec.tpm,
        "parallel": spec.parallel,
        "budget": spec.budget,
        "budget_reset": spec.budget_reset,
        "period_start": start,
        "period_end": end,
        "expires_at": spec.expires_at,
        "disabled": False,
        "priority": spec.priority,
        "admin": spec.admin,
        "metadata": json.dumps(spec.metadata),
        "created_at": now,
        "spend": 0,
        "reserved": 0,
        "in_flight": 0,
        **dict.fromkeys(window.COLUMNS, 0),
    }
    async with database.write() as conn:
        await conn.execute(keys.insert().values(**values))
    return await get_key(database, key_id), secret


async def list_keys(database: Database) -> list[Key]:
    async with database.read() as conn:
        rows = (await conn.execute(select(keys).order_by(keys.c.created_at))).mappings()
        return [Key.of(row) for row in rows]


async def get_key(database: Database, ident: str) -> Key:
    """A key by its id (``key_...``) or its prefix (``sk-pam-...``)."""
    async with database.read() as conn:
        query = select(keys).where(or_(keys.c.id == ident, keys.c.prefix == ident))
        rows = (await conn.execute(query)).mappings().all()
    if len(rows) != 1:
        found = "no" if not rows else "more than one"
        raise NotFoundError(f"{found} API key matches '{ident}'", param="key", code="key_not_found")
    return Key.of(rows[0])


_BY_SECRET = Statement(
    "SELECT * FROM pampero_keys WHERE secret_hash = :digest OR old_secret_hash = :digest"
)
_BY_ID = Statement("SELECT * FROM pampero_keys WHERE id = :id")


async def find_by_secret(database: Database, secret: str, now: float) -> Key | None:
    """The key whose current secret, or whose old secret still in its overlap, is ``secret``
    (on a request's path: the per-request connection, ``Database.one``)."""
    digest = hash_secret(secret)
    row = await database.one(_BY_SECRET, {"digest": digest})
    if row is None:
        return None
    if hmac.compare_digest(row["secret_hash"], digest):
        return Key.of(row)
    until = row["old_secret_until"]
    old = row["old_secret_hash"] or ""
    if hmac.compare_digest(old, digest) and until is not None and until > now:
        return Key.of(row)
    return None


async def key_now(database: Database, key_id: str) -> Key:
    """The key's row as it stands (on a request's path: ``Database.one``)."""
    row = await database.one(_BY_ID, {"id": key_id})
    if row is None:
        raise NotFoundError(f"no API key matches '{key_id}'", param="key", code="key_not_found")
    return Key.of(row)


async def revoke_key(database: Database, ident: str, *, now: float | None = None) -> Key:
    key = await get_key(database, ident)
    async with database.write() as conn:
        await conn.execute(
            update(keys)
            .where(keys.c.id == key.id, keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time() if now is None else now)
        )
    return await get_key(database, key.id)


async def set_disabled(database: Database, ident: str, disabled: bool) -> Key:
    """Disable a key (refused until enabled again) or enable it."""
    key = await get_key(database, ident)
    async with database.write() as conn:
        await conn.execute(update(keys).where(keys.c.id == key.id).values(disabled=disabled))
    return await get_key(database, key.id)


async def rotate_key(
    database: Database, ident: str, *, overlap: float, now: float | None = None
) -> tuple[Key, str]:
    """A new secret for the key; the current one keeps working for ``overlap`` seconds."""
    if overlap < 0:
        raise InvalidRequestError("'overlap' must not be negative", param="overlap")
    now = time.time() if now is None else now
    key = await get_key(database, ident)
    if key.revoked_at is not None:
        raise InvalidRequestError(f"the key {key.id} is revoked", param="key")
    secret = new_secret()
    async with database.write() as conn:
        current = (
            await conn.execute(select(keys.c.secret_hash).where(keys.c.id == key.id))
        ).scalar_one()
        await conn.execute(
            update(keys)
            .where(keys.c.id == key.id)
            .values(
                secret_hash=hash_secret(secret),
                prefix=secret[:PREFIX_LENGTH],
                old_secret_hash=current if overlap > 0 else None,
                old_secret_until=now + overlap if overlap > 0 else None,
            )
        )
    return await get_key(database, key.id), secret
