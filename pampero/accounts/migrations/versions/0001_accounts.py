"""Keys with their live counters, reservations, the usage ledger and its daily rollup.

Revision ID: 0001_accounts
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_accounts"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pampero_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(40), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("old_secret_hash", sa.String(64), nullable=True, unique=True),
        sa.Column("old_secret_until", sa.Float, nullable=True),
        sa.Column("models", sa.Text, nullable=False),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.BigInteger, nullable=True),
        sa.Column("parallel", sa.Integer, nullable=True),
        sa.Column("budget", sa.BigInteger, nullable=True),
        sa.Column("budget_reset", sa.String(16), nullable=False),
        sa.Column("period_start", sa.Float, nullable=False),
        sa.Column("period_end", sa.Float, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("priority", sa.Integer, nullable=True),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("spend", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("in_flight", sa.Integer, nullable=False),
        sa.Column("window_start", sa.Float, nullable=False),
        sa.Column("window_requests", sa.Integer, nullable=False),
        sa.Column("window_tokens", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_pampero_keys_prefix", "pampero_keys", ["prefix"])
    op.create_table(
        "pampero_reservations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("window_start", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_pampero_reservations_expires_at", "pampero_reservations", ["expires_at"])
    op.create_table(
        "pampero_usage_ledger",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(80), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(80), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
        sa.Column("images", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("cost", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
    )
    op.create_index(
        "ix_pampero_usage_ledger_key_created", "pampero_usage_ledger", ["key_id", "created_at"]
    )
    op.create_table(
        "pampero_usage_daily",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_pampero_usage_daily_key_day", "pampero_usage_daily", ["key_id", "day"])


def downgrade() -> None:
    op.drop_table("pampero_usage_daily")
    op.drop_table("pampero_usage_ledger")
    op.drop_table("pampero_reservations")
    op.drop_table("pampero_keys")
