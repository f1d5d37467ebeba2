"""The accounts database: an async SQLAlchemy engine over SQLite (aiosqlite) or PostgreSQL
(asyncpg), its migrations, and transactions that serialise writers the way each one needs.

SQLite has one writer at a time: every write transaction starts with ``BEGIN IMMEDIATE`` (it
takes the write lock first, so two processes never both read a counter and then both write
it), and within one process writers queue on an asyncio lock instead of spinning in SQLite's
busy handler. The per-request statements (admission, settlement, lease upkeep: ``hot()``) run
on SQLite directly from the event loop, on one sqlite3 connection of their own (the DB-API
itself: no pool checkout, no SQLAlchemy execution layer): they are microseconds of local WAL
I/O, while aiosqlite hands every call (cursor, execute, fetch, close) to its thread and back,
which on a busy machine costs more than the statements (docs/benchmarks.md). Their lock is
taken with ``BEGIN IMMEDIATE`` and no busy handler, and waited for with ``asyncio.sleep``, so
the loop never blocks on another process. PostgreSQL runs the same conditional
``UPDATE ... RETURNING`` statements, whose row locks make them exact across processes; its
per-request statements (admission, settlement: one statement each) go straight to asyncpg
(``one``): a pool of its own, each statement prepared once per connection by asyncpg's
statement cache and then one round trip (bind, execute, sync), in autocommit, and no reset
query when a connection goes back to the pool. SQLAlchemy's execution layer (greenlet hops,
compilation, result wrapping) cost more CPU than the statement itself on a loaded machine.
Reads run outside any transaction.

Example::

    database = Database.connect("sqlite:////var/lib/pampero/accounts.db")
    await database.migrate()
    async with database.write() as conn:
        await conn.execute(...)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import TextClause, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from pampero.errors import AccountsUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration; a database already there needs no Alembic (a second to import).
HEAD = "0002_sliding_window"
# How long one database call may take before the request fails closed with a 503.
STATEMENT_TIMEOUT = 5.0
# Only PostgreSQL's advisory lock needs a number: "pampero" in ASCII.
_MIGRATION_LOCK = 0x70616D7065726F
# PostgreSQL: connections of the per-request pool (admissions of one key queue in-process, so
# this bounds concurrent settlements and admissions of different keys).
HOT_POOL_SIZE = 10


DOWN = "the accounts database is unavailable; retry shortly"
# What a database that is down, restarting or locked raises (a timeout is an OSError); the
# DBAPIErrors that mean a wrong statement or value are bugs and stay what they are.
UNAVAILABLE = (DBAPIError, PoolTimeout, OSError)
_BUGS = (IntegrityError, ProgrammingError, DataError)


def default_url(home: Path) -> str:
    return f"sqlite:///{home / 'accounts.db'}"


def async_url(url: str) -> str:
    """``sqlite:///...`` and ``postgresql://...`` with the async drivers pampero uses."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url.split('@')[-1]!r}")
    scheme = scheme.lower()
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return f"sqlite+aiosqlite://{rest}"
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(
        f"unsupported database '{scheme}': use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


class HotConnection(Protocol):
    """What the per-request statements use: ``AsyncConnection.execute``'s shape."""

    async def execute(self, statement: Any, parameters: Any = None) -> Any: ...


class Statement:
    """One SQL statement with ``:name`` parameters: ``text`` for SQLAlchemy, and ``native``
    (``$1``, ``$2``...) with its parameter order for asyncpg."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.text: TextClause = text(sql)
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.native = re.sub(r"(?<![:\w]):(\w+)", number, sql)
        self.names = tuple(names)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


class LoopRow(dict[str, Any]):
    """A row of the loop connection, by column name as a mapping or as attributes (as
    SQLAlchemy's ``Row``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _loop_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> LoopRow:
    return LoopRow(zip([column[0] for column in cursor.description], values, strict=True))


class LoopResult:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.cursor = cursor

    def first(self) -> LoopRow | None:
        row: LoopRow | None = self.cursor.fetchone()
        self.cursor.close()
        return row

    def all(self) -> list[LoopRow]:
        return self.cursor.fetchall()


class LoopConnection:
    """SQLite's per-request connection, called from the event loop with the async verb: the
    DB-API itself (sqlite3 binds ``:name`` parameters as the statements write them), with no
    pool checkout, events or result wrapping in between. Its ``execute`` never suspends, so
    nothing else runs on the loop (nor on this one connection) inside a ``hot()`` block; a
    block must not await anything else."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    async def execute(self, statement: TextClause, parameters: Any = None) -> LoopResult:
        return LoopResult(self.connection.execute(statement.text, parameters or {}))


class Database:
    """One engine (a small connection pool) per process; for the per-request statements, on
    SQLite one synchronous connection to the same file, on PostgreSQL an asyncpg pool."""

    def __init__(
        self, engine: AsyncEngine, loop_path: str | None = None, dsn: str | None = None
    ) -> None:
        self.engine = engine
        self._loop_path = loop_path
        self._loop: sqlite3.Connection | None = None
        self.dialect = engine.dialect.name
        self.sqlite = self.dialect == "sqlite"
        self._writer = asyncio.Lock() if self.sqlite else None
        self._dsn = dsn
        self._native: Any = None  # asyncpg.Pool, made on first use
        self._native_lock = asyncio.Lock()

    @classmethod
    def connect(cls, url: str) -> Database:
        target = async_url(url)
        # No pre-ping (a round trip per checkout): a connection the server dropped fails its
        # request with a 503 and SQLAlchemy then discards the whole pool, which reconnects.
        options: dict[str, Any] = {}
        if target.startswith("sqlite"):
            # Writes commit and reads run in autocommit mode: nothing to roll back on return.
            options["pool_reset_on_return"] = None
            path = target.removeprefix("sqlite+aiosqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": STATEMENT_TIMEOUT}
        else:
            # Reads, admin operations and upkeep only: the per-request statements have their
            # own pool (``one``).
            options.update(
                pool_size=5,
                max_overflow=10,
                pool_timeout=STATEMENT_TIMEOUT,
                connect_args={"timeout": 3, "command_timeout": STATEMENT_TIMEOUT},
            )
        engine = create_async_engine(target, **options)
        if engine.dialect.name == "sqlite":
            _immediate_transactions(engine.sync_engine, busy_ms=int(STATEMENT_TIMEOUT * 1000))
            return cls(engine, loop_path=target.removeprefix("sqlite+aiosqlite:///") or ":memory:")
        return cls(engine, dsn="postgresql://" + target.partition("://")[2])

    async def migrate(self) -> None:
        """Apply every migration not applied yet (several processes may start at once)."""
        if await self._at_head():
            return
        async with self.write() as conn:
            if not self.sqlite:
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            await conn.run_sync(_upgrade)

    async def _at_head(self) -> bool:
        try:
            async with self.read() as conn:
                found = await conn.exec_driver_sql("SELECT version_num FROM alembic_version")
                return [row[0] for row in found] == [HEAD]
        except (AccountsUnavailable, DBAPIError):  # no such table yet, or not reachable yet
            return False

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction, committed on exit (``BEGIN IMMEDIATE`` on SQLite)."""
        async with self._writing():
            try:
                async with asyncio.timeout(STATEMENT_TIMEOUT), self.engine.begin() as conn:
                    yield conn
            except _BUGS:
                raise
            except UNAVAILABLE as exc:
                raise AccountsUnavailable(DOWN) from exc

    @contextlib.asynccontextmanager
    async def hot(self) -> AsyncIterator[HotConnection]:
        """A write transaction for the per-request statements (see the module docstring)."""
        if self._loop_path is None:
            async with self.write() as conn:
                yield conn
            return
        async with self._writing():
            connection = await self._immediate()
            try:
                yield LoopConnection(connection)
                connection.execute("COMMIT")
            except BaseException as exc:
                if connection.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                if isinstance(exc, _LOOP_DOWN) and not isinstance(exc, _LOOP_BUGS):
                    raise AccountsUnavailable(DOWN) from exc
                raise

    def _loop_connection(self) -> sqlite3.Connection:
        if self._loop is None:
            assert self._loop_path is not None
            connection = sqlite3.connect(
                self._loop_path, timeout=0, isolation_level=None, check_same_thread=False
            )
            connection.row_factory = _loop_row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=0")
            self._loop = connection
        return self._loop

    async def _immediate(self) -> sqlite3.Connection:
        """The loop connection holding SQLite's write lock; another process's is waited out
        with ``asyncio.sleep`` (never in SQLite's busy handler, which would block the loop)."""
        deadline = time.monotonic() + STATEMENT_TIMEOUT
        delay = 0.0005
        while True:
            try:
                connection = self._loop_connection()
                connection.execute("BEGIN IMMEDIATE")
                return connection
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() > deadline:
                    raise AccountsUnavailable(DOWN) from exc
            except (sqlite3.Error, OSError) as exc:
                raise AccountsUnavailable(DOWN) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def one(
        self, statement: Statement, params: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        """Run one statement on its own (autocommit) on the per-request connection: SQLite's
        loop connection, or PostgreSQL's asyncpg pool; its first row."""
        if self._loop_path is not None:
            try:
                cursor = self._loop_connection().execute(statement.sql, params)
                try:
                    row: Mapping[str, Any] | None = cursor.fetchone()
                finally:
                    cursor.close()  # no read left open on the connection
                return row
            except _LOOP_BUGS:
                raise
            except _LOOP_DOWN as exc:
                raise AccountsUnavailable(DOWN) from exc
        try:
            async with asyncio.timeout(STATEMENT_TIMEOUT):
                pool = await self._pool()
                async with pool.acquire() as conn:
                    found: Mapping[str, Any] | None = await conn.fetchrow(
                        statement.native, *statement.args(params)
                    )
                    return found
        except _native_down() as exc:
            raise AccountsUnavailable(DOWN) from exc

    async def _pool(self) -> Any:
        if self._native is None:
            async with self._native_lock:
                if self._native is None:
                    import asyncpg  # type: ignore[import-untyped]

                    # Two connections from the start and none closed for idling: a request
                    # should not pay for a connection's set-up. Each statement is planned
                    # once per connection (primary-key updates and inserts: the generic plan
                    # is the plan), not again at each of its first executions.
                    self._native = await asyncpg.create_pool(
                        self._dsn,
                        min_size=2,
                        max_size=HOT_POOL_SIZE,
                        max_inactive_connection_lifetime=0,
                        reset=_keep,
                        timeout=3,
                        command_timeout=STATEMENT_TIMEOUT,
                        server_settings={"plan_cache_mode": "force_generic_plan"},
                    )
        return self._native

    async def open_hot(self) -> None:
        """Open the per-request connection(s) now rather than on the first request."""
        if self._loop_path is not None:
            self._loop_connection()
            return
        try:
            await self._pool()
        except _native_down() as exc:
            raise AccountsUnavailable(DOWN) from exc

    @contextlib.asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose every statement commits by itself (one atomic statement needs
        no BEGIN and COMMIT round trips)."""
        try:
            async with asyncio.timeout(STATEMENT_TIMEOUT), self.engine.connect() as conn:
                yield await conn.execution_options(isolation_level="AUTOCOMMIT")
        except _BUGS:
            raise
        except UNAVAILABLE as exc:
            raise AccountsUnavailable(DOWN) from exc

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads, outside any transaction."""
        try:
            async with asyncio.timeout(STATEMENT_TIMEOUT), self.engine.connect() as conn:
                yield await conn.execution_options(pampero_read=True)
        except _BUGS:
            raise
        except UNAVAILABLE as exc:
            raise AccountsUnavailable(DOWN) from exc

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        if self._writer is None:
            yield
            return
        async with self._writer:
            yield

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        if self._native is not None:
            try:
                await asyncio.wait_for(self._native.close(), timeout=5)
            except TimeoutError:
                self._native.terminate()
            self._native = None
        await self.engine.dispose()


async def _keep(_connection: Any) -> None:
    """The per-request pool's connections carry no session state (autocommit, no SET, no
    LISTEN, no advisory locks): nothing to reset, so no reset round trip on release."""


# SQLite's per-request connection: a wrong statement or value is a bug and stays what it is;
# anything else (locked, I/O, a file gone) means the database is unavailable.
_LOOP_BUGS = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.NotSupportedError,
)
_LOOP_DOWN = (sqlite3.Error, OSError)


@functools.cache
def _native_down() -> tuple[type[BaseException], ...]:
    """What asyncpg raises when the database is down, restarting or out of connections (its
    other errors are bugs: a wrong statement or argument, raised as they are)."""
    from asyncpg import exceptions

    return (
        OSError,
        TimeoutError,
        exceptions.PostgresConnectionError,  # and ConnectionDoesNotExistError
        exceptions.OperatorInterventionError,  # shutting down, starting up
        exceptions.InsufficientResourcesError,  # too many connections
    )


def _immediate_transactions(engine: Engine, *, busy_ms: int) -> None:
    """SQLite: pysqlite's own BEGIN is off; writes take the lock at BEGIN IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        if not conn.get_execution_options().get("pampero_read"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
