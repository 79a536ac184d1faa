"""When to read the store again for live updates: PostgreSQL says so, SQLite is polled.

Flow runs, the CLI and the UI write state transitions and stage logs from many processes,
and the UI's live feed (:class:`ui.live.ChangeFeed`) must learn of them. With PostgreSQL
the database tells it: migration 0011 makes every statement that adds state transitions
or stage logs ``NOTIFY`` the channel :data:`CHANGES_CHANNEL` when its transaction commits,
whichever process wrote, and :class:`PostgresListener` holds one connection that
``LISTEN``\\s on it. The feed then reads the store only when something was written, within
milliseconds of the commit, instead of every 250 ms. SQLite has no such word, so
:class:`Polling` says "read again" every interval, as before.

A listener that loses its connection (PostgreSQL restarted, the network cut) falls back
to polling until it has listened again, and says "read again" once it has: what was
written while it was deaf is read then. Notifications carry no data the feed trusts; they
only wake it, and the rows themselves come from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from shipyard.store.engine import postgres_connect_args

__all__ = ["CHANGES_CHANNEL", "ChangeSignal", "Polling", "PostgresListener",
           "change_signal"]

log = logging.getLogger("shipyard.store.notify")

CHANGES_CHANNEL = "shipyard_changes"
"""The channel migration 0011's triggers notify after inserts into ``state_transitions``
and ``stage_logs`` (the payload is the table's name)."""

POLL_SECONDS = 0.25
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
"""Waits between attempts to listen again after the connection was lost (the last one
repeats)."""


class ChangeSignal(Protocol):
    """Says when the store may have changed."""

    async def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds; True when the store may have changed since
        the last wait (read it), False when it certainly has not."""
        ...

    async def run(self) -> None:
        """What keeps the signal alive (a listening connection), until cancelled."""
        ...


class Polling:
    """No word from the database (SQLite): every ``interval_seconds`` may have brought
    changes."""

    def __init__(self, interval_seconds: float = POLL_SECONDS) -> None:
        self.interval_seconds = interval_seconds

    async def wait(self, timeout: float) -> bool:
        await asyncio.sleep(min(timeout, self.interval_seconds))
        return True

    async def run(self) -> None:
        return None


class PostgresListener:
    """``LISTEN`` on :data:`CHANGES_CHANNEL` over one connection of its own; polls while
    that connection is down (see the module's docstring)."""

    def __init__(self, url: URL, *, poll_seconds: float = POLL_SECONDS) -> None:
        self._conninfo = make_conninfo(
            url.set(drivername="postgresql").render_as_string(hide_password=False),
            **postgres_connect_args(url))  # the store's own deadlines and keepalives
        self._shown = url.render_as_string(hide_password=True)
        self.poll_seconds = poll_seconds
        self._changed = asyncio.Event()
        self.listening = False
        self.connections = 0  # how often it began to listen: 1 unless it lost the server

    async def wait(self, timeout: float) -> bool:
        if not self.listening:
            await asyncio.sleep(min(timeout, self.poll_seconds))
            self._changed.clear()
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        changed = self._changed.is_set()
        # Cleared before the caller reads the store: a commit after this wakes the next
        # wait, so none is missed.
        self._changed.clear()
        return changed

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as err:
                if self.listening:  # it had listened: a fresh outage, retry soon
                    failures = 0
                self.listening = False
                pause = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                log.warning("listening for store changes on %s failed (%s); polling every "
                            "%.2gs and listening again in %.1gs", self._shown, err,
                            self.poll_seconds, pause)
                await asyncio.sleep(pause)
            else:  # the server ended the stream without an error: listen again at once
                self.listening = False
                failures = 0

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True) as connection:
            await connection.execute(f"LISTEN {CHANGES_CHANNEL}")
            self.listening = True
            self.connections += 1
            self._changed.set()  # whatever was written while nobody listened
            async for _ in connection.notifies():
                self._changed.set()


def change_signal(engine: Engine) -> ChangeSignal:
    """The signal for the store on ``engine``: a listener for PostgreSQL, polling for
    SQLite."""
    if engine.dialect.name == "postgresql":
        return PostgresListener(engine.url)
    return Polling()
