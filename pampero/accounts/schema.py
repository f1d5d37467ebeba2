"""The accounts tables (SQLAlchemy Core), as the migrations in ``migrations/`` create them.

Times are float seconds since the epoch (UTC) and money is integer micro-USD, so every
limit is checked by plain arithmetic inside one SQL statement on SQLite and PostgreSQL alike.

- ``pampero_keys``: one row per API key: its settings, and the live counters that admission
  updates atomically (budget spend and reservations in the current period, requests in flight,
  the requests and tokens of the sliding rate window, in ten-second buckets: ``window.py``).
- ``pampero_reservations``: one row per admitted request not yet settled, with a lease
  (``expires_at``) its process renews; an expired row is released by whichever process sees it.
- ``pampero_usage_ledger``: append-only, one row per finished request: the source of truth
  from which ``pampero keys reconcile`` rebuilds the counters and the daily rollup.
- ``pampero_usage_daily``: requests, tokens and cost per day, key and model, maintained in the
  same transaction as each ledger row, so ``GET /v1/usage`` never scans the ledger.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from pampero.accounts.window import REQUESTS, TOKENS

metadata = MetaData()

# SQLite only numbers rows by itself for a column typed exactly INTEGER PRIMARY KEY.
LedgerId = BigInteger().with_variant(Integer(), "sqlite")

keys = Table(
    "pampero_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(40), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("old_secret_hash", String(64), nullable=True, unique=True),
    Column("old_secret_until", Float, nullable=True),
    Column("models", Text, nullable=False),  # a JSON list of globs; [] allows every model
    Column("rpm", Integer, nullable=True),
    Column("tpm", BigInteger, nullable=True),
    Column("parallel", Integer, nullable=True),
    Column("budget", BigInteger, nullable=True),  # micro-USD per period
    Column("budget_reset", String(16), nullable=False),  # daily | weekly | monthly | none
    Column("period_start", Float, nullable=False),
    Column("period_end", Float, nullable=True),  # when spend next resets; None: never
    Column("expires_at", Float, nullable=True),
    Column("disabled", Boolean, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("priority", Integer, nullable=True),
    Column("admin", Boolean, nullable=False),
    Column("metadata", Text, nullable=False),  # a JSON object
    Column("created_at", Float, nullable=False),
    Column("spend", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("in_flight", Integer, nullable=False),
    # The rpm/tpm window: a ring of ten-second buckets (window.py).
    Column("rate_epoch", BigInteger, nullable=False),
    *(Column(name, Integer, nullable=False) for name in REQUESTS),
    *(Column(name, BigInteger, nullable=False) for name in TOKENS),
)
Index("ix_pampero_keys_prefix", keys.c.prefix)

reservations = Table(
    "pampero_reservations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("key_id", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("window_start", Float, nullable=False),  # the start of its rate bucket
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)
Index("ix_pampero_reservations_expires_at", reservations.c.expires_at)

ledger = Table(
    "pampero_usage_ledger",
    metadata,
    Column("id", LedgerId, primary_key=True, autoincrement=True),
    Column("request_id", String(80), nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("provider", String(80), nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("images", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("cost", BigInteger, nullable=False),  # micro-USD
    Column("status", String(16), nullable=False),  # completed | failed | disconnected | expired
    Column("created_at", Float, nullable=False),
    Column("day", String(10), nullable=False),  # YYYY-MM-DD (UTC) of created_at
)
Index("ix_pampero_usage_ledger_key_created", ledger.c.key_id, ledger.c.created_at)

usage_daily = Table(
    "pampero_usage_daily",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("key_id", String(40), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("cost", BigInteger, nullable=False),
)
Index("ix_pampero_usage_daily_key_day", usage_daily.c.key_id, usage_daily.c.day)
