"""Accounts: API keys with limits and budgets, and their usage, in a real database.

Keys (``keys.py``) live in SQLite or PostgreSQL (``database.py``, tables in ``schema.py``,
Alembic migrations in ``migrations/``). Every inference request is admitted against its key's
rpm, tpm, parallel and budget limits in one atomic statement and settled with its real usage
(``limits.py``); an append-only ledger records it and a daily rollup serves ``/v1/usage``
(``usage.py``). ``Accounts`` (``service.py``) is one process's handle; ``commands.py`` is
``pampero keys``. The HTTP edge (``pampero.api.accounts``) uses this package; it imports
nothing from the edge.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pampero.accounts.database import Database, default_url
    from pampero.accounts.keys import Key, KeySpec
    from pampero.accounts.outcome import Outcome, Ticket
    from pampero.accounts.service import Accounts

# Loaded on first use: a server without accounts imports this package's light modules (the
# ``pampero keys`` parser, ``outcome.py``) and never SQLAlchemy (~300 ms and ~37 MB).
_WHERE = {
    "Accounts": "service",
    "Database": "database",
    "Key": "keys",
    "KeySpec": "keys",
    "Outcome": "outcome",
    "Ticket": "outcome",
    "default_url": "database",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = ["Accounts", "Database", "Key", "KeySpec", "Outcome", "Ticket", "default_url"]
