"""Opening the store's database, safely for several processes at once.

SQLite is the default and must survive two processes writing at the same moment (the CLI,
the webhook server and several Prefect flow runs all write). Three measures make that hold:

* WAL journal, so readers never block the writer and the writer never blocks readers;
* a busy timeout, so a writer waits for the lock instead of failing at once;
* ``BEGIN IMMEDIATE`` for write transactions. A deferred transaction that reads and then
  writes must upgrade its lock, and when two do so together SQLite fails one of them at
  once with "database is locked", whatever the busy timeout. Taking the write lock at
  ``BEGIN`` makes the second writer wait its turn instead.

On top, :func:`retry_when_locked` repeats a whole unit of work on the rare lock error that
still gets through (e.g. a checkpoint racing the timeout).

PostgreSQL gets deadlines a connection string can change (:func:`postgres_connect_args`):
a connection is accepted within ``connect_timeout``, a dead peer is noticed by TCP
keepalives, and a statement ends within ``statement_timeout`` (migrations excepted). Past
one, the error is :class:`~shipyard.store.errors.StoreTimedOut`, naming the deadline.
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from shipyard.store.errors import StoreTimedOut

__all__ = ["POSTGRES_DEADLINES", "WRITE", "StoreConfigError", "open_engine",
           "postgres_connect_args", "retry_when_locked", "retry_when_unavailable"]

T = TypeVar("T")

WRITE = "shipyard_write"
"""Execution option marking a connection that will write (``BEGIN IMMEDIATE`` on SQLite)."""

BUSY_TIMEOUT_MS = 30_000

POSTGRES_DEADLINES: dict[str, str] = {
    "connect_timeout": "10",  # seconds; libpq tries twice with sslmode=prefer
    # A server that vanished (a restart, a network cut) is noticed within about a minute
    # instead of when the kernel gives up on the connection.
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "options": "-c statement_timeout=60s",
}
"""libpq parameters every PostgreSQL connection of the store gets, unless the URL names the
parameter itself (``?connect_timeout=30``, ``?options=-c%20statement_timeout%3D5min``)."""

_URL_HELP = (
    "set SHIPYARD_DATABASE_URL to a SQLAlchemy URL such as "
    "'sqlite:////var/lib/shipyard/shipyard.db' or "
    "'postgresql+psycopg://user:password@127.0.0.1:5432/shipyard', or unset it to use "
    "SQLite under SHIPYARD_HOME"
)


class StoreConfigError(ValueError):
    """The database URL is unusable; the message names the problem and the fix."""


def open_engine(url: str) -> Engine:
    """Create an engine for ``url``, tuned for concurrent use; raise :class:`StoreConfigError`.

    Nothing is written: a SQLite file's directory is created, the file itself appears on the
    first connection.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as err:  # ValueError: e.g. a port that is no number
        # Unparsed, the URL may still hold a password: mask what looks like one.
        shown = re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)
        raise StoreConfigError(f"database URL {shown!r} is not a valid URL: {_URL_HELP}") from err
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in (
        "psycopg2",
        "postgresql",
    ):
        # psycopg 3 is what we ship; a bare postgresql:// would look for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    shown = parsed.render_as_string(hide_password=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.get_driver_name() != "pysqlite":
                raise StoreConfigError(
                    f"database URL {shown!r} names the driver {parsed.drivername!r}, but the "
                    f"SQLite store only uses Python's sqlite3 ('sqlite:///<path>'): {_URL_HELP}"
                )
            return _sqlite_engine(parsed.database)
        engine = create_engine(parsed, pool_pre_ping=True, future=True,
                               connect_args=postgres_connect_args(parsed)
                               if parsed.get_backend_name() == "postgresql" else {})
    except (NoSuchModuleError, ImportError) as err:
        # NoSuchModuleError: SQLAlchemy knows no such dialect or driver; ImportError: it
        # does, but the driver's package (e.g. pg8000, MySQLdb) is not installed.
        raise StoreConfigError(
            f"database URL {shown!r} names the driver "
            f"{parsed.drivername!r}, which is not installed: {_URL_HELP}"
        ) from err
    if engine.dialect.is_async:
        engine.dispose()
        raise StoreConfigError(
            f"database URL {shown!r} names the asynchronous driver {parsed.drivername!r}; "
            f"the store needs a synchronous one: {_URL_HELP}"
        )
    if parsed.get_backend_name() == "postgresql":
        _name_the_deadlines(engine, parsed)
    return engine


def postgres_connect_args(url: URL) -> dict[str, str]:
    """The :data:`POSTGRES_DEADLINES` the URL does not set itself."""
    return {key: value for key, value in POSTGRES_DEADLINES.items() if key not in url.query}


def _name_the_deadlines(engine: Engine, url: URL) -> None:
    """Make a connection or a statement that ran past its deadline a
    :class:`StoreTimedOut` that names the deadline and how to change it."""
    shown = url.render_as_string(hide_password=True)
    settings = {**POSTGRES_DEADLINES, **{k: str(v) for k, v in url.query.items()}}

    @event.listens_for(engine, "handle_error")
    def _timed_out(context: ExceptionContext) -> None:
        error = context.original_exception
        text = str(error)
        if getattr(error, "sqlstate", None) == "57014" and "statement timeout" in text:
            raise StoreTimedOut(
                f"a query on the store {shown} ran past its statement_timeout "
                f"({settings['options']}) and was cancelled; if the database is merely "
                "slow, give SHIPYARD_DATABASE_URL a longer one (?options=-c%20"
                "statement_timeout%3D5min)") from error
        if "timeout expired" in text:
            raise StoreTimedOut(
                f"the store {shown} did not accept a connection within its connect_timeout "
                f"of {settings['connect_timeout']} s: is PostgreSQL running (`shipyard "
                "status`)? Over a slow network, set ?connect_timeout=N in "
                "SHIPYARD_DATABASE_URL") from error


def _sqlite_engine(database: str | None) -> Engine:
    if not database or database == ":memory:":
        raise StoreConfigError(
            "an in-memory SQLite store would vanish with the process and cannot be shared "
            f"between the CLI and the flows: {_URL_HELP}"
        )
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{Path(database).expanduser()}",
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        future=True,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _enter_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        mode = "IMMEDIATE" if connection.get_execution_options().get(WRITE) else "DEFERRED"
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _enter_wal(cursor: Any) -> None:
    """Switch the file to WAL (a no-op once it is). On a fresh file several processes do
    this at once, and SQLite may answer "database is locked" at once, without waiting in
    its busy handler: try again, with jitter, for as long as the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            text = str(err).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
            time.sleep(0.02 + 0.08 * random.random())  # noqa: S311 - jitter, not a secret


def _is_lock_error(err: OperationalError) -> bool:
    text = str(err.orig).lower()
    return "database is locked" in text or "database is busy" in text


UNAVAILABLE_SECONDS = 30.0
"""How long a write waits for a PostgreSQL that went away (restarted, failed over) to
take connections again."""


def retry_when_unavailable(work: Callable[[], T], *,
                           seconds: float = UNAVAILABLE_SECONDS) -> T:
    """Run ``work`` and repeat it, backing off, while the database cannot be reached or
    dropped the connection (a PostgreSQL restart), for at most ``seconds``.

    ``work`` must be a whole transaction: one the server dropped was rolled back, so
    repeating it is safe. A refusal, a timeout or a constraint is not retried."""
    deadline = time.monotonic() + seconds
    pause = 0.25
    while True:
        try:
            return work()
        except DBAPIError as err:
            if not _unreachable(err) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 4.0)


def _unreachable(err: DBAPIError) -> bool:
    """The database dropped the connection or takes none: SQLAlchemy's own verdict,
    or PostgreSQL's connection-failure and shutdown states (class 08, 57P01-57P03)."""
    if err.connection_invalidated:
        return True
    sqlstate = getattr(err.orig, "sqlstate", None)
    if sqlstate is None:  # no answer at all: the connection could not be made
        return isinstance(err, OperationalError) and "sqlite" not in type(err.orig).__module__
    return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")


def retry_when_locked(work: Callable[[], T], *, attempts: int = 6) -> T:
    """Run ``work`` and repeat it, with jittered backoff, while SQLite reports a lock.

    ``work`` must be a whole transaction, so repeating it is safe. Other errors, and a lock
    error on the last attempt, propagate.
    """
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except OperationalError as err:
            if attempt == attempts or not _is_lock_error(err):
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))  # noqa: S311
    raise AssertionError("unreachable")
