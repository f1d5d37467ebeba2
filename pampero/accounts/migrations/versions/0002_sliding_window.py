"""The rpm/tpm window slides: seven ten-second buckets per key replace the fixed minute.

A key's fixed window (``window_start``, ``window_requests``, ``window_tokens``) let it send
twice its limit across a window boundary; ``rate_epoch`` and the ``rate_requests_*`` and
``rate_tokens_*`` buckets (pampero/accounts/window.py) hold over any 60 s. Existing keys start
with an empty window.

Revision ID: 0002_sliding_window
Revises: 0001_accounts
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_sliding_window"
down_revision = "0001_accounts"
branch_labels = None
depends_on = None

# As in window.py when this migration was written (a migration must not change with the code).
SLOTS = 7


def upgrade() -> None:
    with op.batch_alter_table("pampero_keys") as batch:
        batch.add_column(sa.Column("rate_epoch", sa.BigInteger, nullable=False, server_default="0"))
        for i in range(SLOTS):
            batch.add_column(
                sa.Column(f"rate_requests_{i}", sa.Integer, nullable=False, server_default="0")
            )
        for i in range(SLOTS):
            batch.add_column(
                sa.Column(f"rate_tokens_{i}", sa.BigInteger, nullable=False, server_default="0")
            )
        batch.drop_column("window_start")
        batch.drop_column("window_requests")
        batch.drop_column("window_tokens")


def downgrade() -> None:
    with op.batch_alter_table("pampero_keys") as batch:
        batch.add_column(sa.Column("window_start", sa.Float, nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("window_requests", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("window_tokens", sa.BigInteger, nullable=False, server_default="0")
        )
        for i in range(SLOTS):
            batch.drop_column(f"rate_tokens_{i}")
            batch.drop_column(f"rate_requests_{i}")
        batch.drop_column("rate_epoch")
