"""Alembic environment: migrations run on a connection handed over by ``shipyard.store``.

Several processes may open a fresh store at once (the CLI, the webhook server, flow runs),
so the migration runs under a lock: ``BEGIN IMMEDIATE`` on SQLite (the connection comes with
the write option) and a transaction-scoped advisory lock on PostgreSQL. Alembic reads the
current revision inside that transaction, so the second process sees the first one's work.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from shipyard.store.models import Base

_MIGRATION_LOCK_KEY = 0x5348_4950  # "SHIP"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})"))
    context.run_migrations()
