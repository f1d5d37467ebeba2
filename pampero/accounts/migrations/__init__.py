"""Alembic migrations of the accounts database, applied by ``Database.migrate``."""
