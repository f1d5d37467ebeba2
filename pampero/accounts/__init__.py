"""Accounts: API keys with limits and budgets, and their usage, in a real database.

Keys (``keys.py``) live in SQLite or PostgreSQL (``database.py``, tables in ``schema.py``,
Alembic migrations in ``migrations/``). Every inference request is admitted against its key's
rpm, tpm, parallel and budget limits in one atomic statement and settled with its real usage
(``limits.py``); an append-only ledger records it and a daily rollup serves ``/v1/usage``
(``usage.py``). ``Accounts`` (``service.py``) is one process's handle; ``commands.py`` is
``pampero keys``. The HTTP edge (``pampero.api.accounts``) uses this package; it imports
nothing from the edge.
"""

from pampero.accounts.database import Database, default_url
from pampero.accounts.keys import Key, KeySpec
from pampero.accounts.limits import Outcome, Ticket
from pampero.accounts.service import Accounts

__all__ = ["Accounts", "Database", "Key", "KeySpec", "Outcome", "Ticket", "default_url"]
