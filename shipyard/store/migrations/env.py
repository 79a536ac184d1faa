"""Alembic environment: migrations run on a connection handed over by ``shipyard.store``.

Several processes may open a fresh store at once (the CLI, the webhook server, flow runs),
so the migration runs under a lock: ``BEGIN IMMEDIATE`` on SQLite (the connection comes with
the write option) and a transaction-scoped advisory lock on PostgreSQL. Alembic reads the
current revision inside that transaction, so the second process sees the first one's work.

Alembic takes SQLite for a database without transactional DDL and would then commit after
each migration, reading the revision before the lock is held: two processes could both
read 0001 and both add 0002's column. SQLite's DDL is transactional (our engine issues
``BEGIN`` itself), so the whole upgrade runs as one transaction on both backends.
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
    transactional_ddl=True,
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # A migration may take its time, and so may waiting for another process's: the
        # store's statement_timeout bounds queries, not schema changes.
        connection.execute(text("SET LOCAL statement_timeout = 0"))
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})"))
    context.run_migrations()
