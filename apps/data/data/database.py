"""The activities table and the engine that reaches it, on SQLite or PostgreSQL.

The table is modelled on Netflix's viewing-history store: a user's activities are one
partition (user_id) ordered newest first by (activity_time, activity_id), which the
composite index below serves for the per-user page query; a second index on
activity_time serves "most recent across users".

Why no Alembic: the schema is one table with two indexes that only ever gets created,
and `ensure_schema` does that idempotently. The first change to an existing column is
the moment to add Alembic (Shipyard's own store shows the setup).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    TypeDecorator,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import URL
from sqlalchemy.schema import CreateIndex, CreateTable

__all__ = ["ID_LENGTH", "activities", "describe_error", "ensure_schema", "make_engine", "metadata",
           "ping"]

ID_LENGTH = 64
# Any constant: two replicas starting at once on PostgreSQL take turns creating the schema.
_SCHEMA_LOCK_KEY = 0x5D47A1


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in, an aware UTC datetime out, on both dialects.

    SQLite has no time zones (SQLAlchemy stores naive ISO text, which sorts correctly
    only if every value is in one zone), PostgreSQL's timestamptz does: storing UTC
    everywhere makes ordering and cursors behave the same on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("activity times must be time-zone aware")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None,
                             dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

activities = Table(
    "activities",
    metadata,
    Column("user_id", String(ID_LENGTH), primary_key=True),
    Column("activity_id", String(ID_LENGTH), primary_key=True),
    Column("activity_time", UTCDateTime(), nullable=False),
    Column("content_id", String(ID_LENGTH), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("payload", JSON(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
)
Index("ix_activities_user_newest", activities.c.user_id, activities.c.activity_time.desc(),
      activities.c.activity_id.desc())
Index("ix_activities_newest", activities.c.activity_time.desc())


def make_engine(url: URL, *, timeout_seconds: float) -> Engine:
    """An engine whose every wait is bounded by `timeout_seconds`: connecting, checking a
    connection out of the pool and, on SQLite, waiting for another writer's lock.

    SQLite runs in WAL mode so readers never block the writer nor the writer readers,
    which is what lets several local instances share one file.
    """
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url, pool_timeout=timeout_seconds, pool_pre_ping=True,
            # Threadpool handlers: a connection may be returned from another thread.
            connect_args={"timeout": timeout_seconds, "check_same_thread": False})
        busy_ms = int(timeout_seconds * 1000)

        @event.listens_for(engine, "connect")
        def _configure(connection: sqlite3.Connection, _: Any) -> None:
            cursor = connection.cursor()
            try:
                # busy_timeout first: switching to WAL may wait on another instance.
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                cursor.execute("PRAGMA journal_mode = WAL")
                # In WAL mode NORMAL loses no committed data on a process crash, only on
                # power loss, and spares an fsync per commit.
                cursor.execute("PRAGMA synchronous = NORMAL")
            finally:
                cursor.close()

        return engine
    return create_engine(
        url, pool_timeout=timeout_seconds, pool_pre_ping=True, pool_size=5, max_overflow=10,
        # libpq counts whole seconds and treats anything below 2 as 2.
        connect_args={"connect_timeout": max(2, round(timeout_seconds))})


def ensure_schema(engine: Engine) -> None:
    """Create the table and its indexes if missing; safe when several instances start at
    once (IF NOT EXISTS, and on PostgreSQL an advisory lock held for the transaction)."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
        for table in metadata.sorted_tables:
            connection.execute(CreateTable(table, if_not_exists=True))
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                connection.execute(CreateIndex(index, if_not_exists=True))


def ping(engine: Engine) -> bool:
    """True if the database answers a trivial query (raises if it cannot be reached)."""
    with engine.connect() as connection:
        answer: object = connection.execute(text("SELECT 1")).scalar_one()
        return answer == 1


def describe_error(err: BaseException) -> str:
    """One line for a log or a readiness reason: the type and the driver's first line
    (SQLAlchemy appends the statement and a link to its docs on further lines)."""
    text_ = str(err).strip()
    return f"{type(err).__name__}: {text_.splitlines()[0] if text_ else 'no detail'}"
