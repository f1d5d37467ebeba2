"""``Accounts``: one process's handle on the accounts database, built in the app's lifespan.

It authenticates secrets (cached for half a second, so a revoked key is refused by every
process within one second, and admission re-checks revocation in its own statement), admits
and settles requests (``limits.py``), renews the leases of this process's live reservations
and releases expired ones from any process (the maintenance task), and settles in the
background, retrying while the database is down, so a response never waits for its ledger row.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import weakref
from collections import OrderedDict

from pampero.accounts import limits
from pampero.accounts.database import Database
from pampero.accounts.keys import Key, find_by_secret
from pampero.accounts.outcome import Outcome, Ticket
from pampero.errors import AccountsUnavailable, RateLimited
from pampero.pricing import Price

log = logging.getLogger(__name__)

AUTH_CACHE_SECONDS = 0.5
AUTH_CACHE_SIZE = 4096
SETTLE_RETRY_SECONDS = 120.0


class Accounts:
    def __init__(self, database: Database, *, lease: float) -> None:
        self.database = database
        self.lease = lease
        self._cache: OrderedDict[str, tuple[float, Key | None]] = OrderedDict()
        self._live: dict[str, Ticket] = {}
        self._settling: set[asyncio.Task[None]] = set()
        self._maintenance: asyncio.Task[None] | None = None
        # Admissions of one key queue here rather than on its row lock in the database, where
        # each would hold a pooled connection while it waits.
        # Keys whose requests-per-minute window is full, until when: exact to refuse locally,
        # since a window's count only grows until it ends.
        self._closed: dict[str, limits.Closed] = {}
        # Concurrent look-ups of one secret share one query.
        self._looking: dict[str, asyncio.Future[Key | None]] = {}
        self._admitting: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @classmethod
    def connect(cls, url: str, *, lease: float) -> Accounts:
        return cls(Database.connect(url), lease=lease)

    async def start(self) -> None:
        await self.database.migrate()
        await self.database.open_hot()
        self._maintenance = asyncio.create_task(self._maintain())

    async def stop(self) -> None:
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=5)
        if self._maintenance is not None:
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)
        await self.database.close()

    async def authenticate(self, secret: str) -> Key | None:
        """The key ``secret`` belongs to, if any (any state: callers check ``usable``)."""
        digest = hashlib.sha256(secret.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        pending = self._looking.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Key | None] = asyncio.get_running_loop().create_future()
        self._looking[digest] = future
        try:
            key = await find_by_secret(self.database, secret, time.time())
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters, if any, raise it themselves
            raise
        else:
            future.set_result(key)
        finally:
            del self._looking[digest]
        self._cache[digest] = (now + AUTH_CACHE_SECONDS, key)
        self._cache.move_to_end(digest)
        while len(self._cache) > AUTH_CACHE_SIZE:
            self._cache.popitem(last=False)
        return key

    async def admit(
        self,
        key: Key,
        *,
        model: str,
        provider: str,
        price: Price | None,
        amount: int,
        tokens: int,
        arrival: float,
        request_id: str,
        headers: dict[str, str],
    ) -> Ticket:
        lock = self._admitting.get(key.id)
        if lock is None:
            lock = self._admitting[key.id] = asyncio.Lock()
        async with lock:
            self._refuse_if_closed(key, headers)
            ticket = await self._admit(
                key, model, provider, price, amount, tokens, arrival, headers
            )
        ticket.request_id = request_id
        self._live[ticket.id] = ticket
        return ticket

    async def _admit(
        self,
        key: Key,
        model: str,
        provider: str,
        price: Price | None,
        amount: int,
        tokens: int,
        arrival: float,
        headers: dict[str, str],
    ) -> Ticket:
        return await limits.admit(
            self.database,
            key,
            model=model,
            provider=provider,
            price=price,
            amount=amount,
            tokens=tokens,
            lease=self.lease,
            arrival=arrival,
            headers=headers,
            closed=self._closed,
        )

    def _refuse_if_closed(self, key: Key, headers: dict[str, str]) -> None:
        closed = self._closed.get(key.id)
        if closed is None:
            return
        now = time.time()
        if closed.until <= now:
            del self._closed[key.id]
            return
        headers.update(limits.rate_headers(key, closed.window, now))
        raise RateLimited(
            f"rate limit reached: {key.rpm} requests per minute for key {key.prefix}",
            retry_after=max(1, math.ceil(closed.until - now)),
        )

    def settle(self, ticket: Ticket, outcome: Outcome) -> None:
        """Settle in the background (once); retried while the database is down."""
        if ticket.settled or ticket.id not in self._live:
            return
        del self._live[ticket.id]
        task = asyncio.get_running_loop().create_task(self._settle(ticket, outcome))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, ticket: Ticket, outcome: Outcome) -> None:
        deadline = time.monotonic() + SETTLE_RETRY_SECONDS
        delay = 0.1
        while True:
            try:
                await limits.settle(self.database, ticket, outcome)
                return
            except AccountsUnavailable:
                if time.monotonic() > deadline:
                    log.error(
                        "could not settle request %s of key %s: the accounts database is down;"
                        " its reservation expires by itself, its usage is lost",
                        ticket.request_id,
                        ticket.key.prefix,
                    )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def idle(self) -> None:
        """Wait until every settlement started so far has been written (tests, shutdown)."""
        while self._settling:
            await asyncio.wait(set(self._settling))

    async def _maintain(self) -> None:
        interval = max(0.2, self.lease / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await limits.renew(self.database, list(self._live), lease=self.lease)
                swept = await limits.sweep(self.database)
                if swept:
                    log.info("released %d expired reservation(s)", swept)
            except AccountsUnavailable:
                log.warning("accounts database unavailable; retrying in %.1f s", interval)
            except Exception:  # the task must outlive any one failure
                log.exception("accounts maintenance failed")
