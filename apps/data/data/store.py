"""Reads and writes of user activities, one short transaction each.

Every method blocks on the database: call them from a worker thread (FastAPI runs plain
`def` handlers in its threadpool), never on the event loop. Each call's duration is
reported to a `QueryTimer` by operation name, failed calls included.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal, Protocol

from sqlalchemy import Engine, Insert, Row, delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from data.cursor import Cursor
from data.database import activities, ensure_schema, ping

__all__ = ["OPERATIONS", "Activity", "ActivityKind", "ActivityStore", "Operation", "Page",
           "PayloadValue", "QueryTimer", "Written"]

PayloadValue = str | int | float | bool | None
Operation = Literal["insert", "page", "get", "recent", "delete_user", "ping", "schema"]
OPERATIONS: tuple[Operation, ...] = ("insert", "page", "get", "recent", "delete_user", "ping",
                                     "schema")


class ActivityKind(StrEnum):
    PLAY = "play"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    RATE = "rate"


@dataclass(frozen=True)
class Activity:
    """One thing a user did with one title, at `activity_time` (aware, UTC)."""

    user_id: str
    activity_id: str
    activity_time: datetime
    content_id: str
    kind: ActivityKind
    payload: Mapping[str, PayloadValue] = field(default_factory=dict)

    @property
    def position(self) -> Cursor:
        """Where this activity sits in its user's newest-first order."""
        return Cursor(self.activity_time, self.activity_id)


@dataclass(frozen=True)
class Page:
    """Activities newest first; `next` is where the following page starts, None at the end."""

    activities: tuple[Activity, ...]
    next: Cursor | None


@dataclass(frozen=True)
class Written:
    """The outcome of a write: the activities now stored, in the order they were given,
    and which of them this write created (the others were stored by an earlier one)."""

    activities: tuple[Activity, ...]
    created: frozenset[tuple[str, str]]

    def was_created(self, activity: Activity) -> bool:
        return (activity.user_id, activity.activity_id) in self.created


class QueryTimer(Protocol):
    def observe(self, operation: Operation, seconds: float) -> None: ...


class _NoTimer:
    def observe(self, operation: Operation, seconds: float) -> None:
        pass


class ActivityStore:
    """The activities table behind an engine (see data.database)."""

    def __init__(self, engine: Engine, timer: QueryTimer | None = None) -> None:
        self.engine = engine
        self._timer = timer or _NoTimer()

    def close(self) -> None:
        """Close the pooled connections (at shutdown)."""
        self.engine.dispose()

    def ensure_schema(self) -> None:
        with self._timed("schema"):
            ensure_schema(self.engine)

    def ping(self) -> bool:
        with self._timed("ping"):
            return ping(self.engine)

    def add(self, batch: Sequence[Activity], recorded_at: datetime) -> Written:
        """Store `batch` in one transaction. Idempotent per (user_id, activity_id): an
        activity already stored is kept as it is (a client retrying after a lost answer
        must not create a second one) and returned as stored."""
        if not batch:
            return Written((), frozenset())
        rows = [{"user_id": a.user_id, "activity_id": a.activity_id,
                 "activity_time": a.activity_time, "content_id": a.content_id,
                 "kind": a.kind.value, "payload": dict(a.payload), "recorded_at": recorded_at}
                for a in batch]
        keys = [(a.user_id, a.activity_id) for a in batch]
        with self._timed("insert"), self.engine.begin() as connection:
            inserted = connection.execute(
                self._insert_ignoring_duplicates().values(rows).returning(
                    activities.c.user_id, activities.c.activity_id))
            created = frozenset((row.user_id, row.activity_id) for row in inserted)
            earlier: dict[tuple[str, str], Activity] = {}
            if len(created) < len(keys):
                existing = connection.execute(select(activities).where(
                    tuple_(activities.c.user_id, activities.c.activity_id).in_(
                        [k for k in keys if k not in created])))
                earlier = {(r.user_id, r.activity_id): _activity(r) for r in existing}
        return Written(tuple(earlier.get(k, a) for k, a in zip(keys, batch, strict=True)),
                       created)

    def page(self, user_id: str, limit: int, after: Cursor | None = None) -> Page:
        """Up to `limit` of the user's activities newest first, strictly after `after`."""
        query = (select(activities).where(activities.c.user_id == user_id)
                 .order_by(activities.c.activity_time.desc(), activities.c.activity_id.desc())
                 .limit(limit + 1))  # one more than asked tells whether a next page exists
        if after is not None:
            query = query.where(tuple_(activities.c.activity_time, activities.c.activity_id)
                                < tuple_(after.activity_time, after.activity_id))
        with self._timed("page"), self.engine.connect() as connection:
            found = tuple(_activity(row) for row in connection.execute(query))
        if len(found) > limit:
            return Page(found[:limit], found[limit - 1].position)
        return Page(found, None)

    def get(self, user_id: str, activity_id: str) -> Activity | None:
        query = select(activities).where(activities.c.user_id == user_id,
                                         activities.c.activity_id == activity_id)
        with self._timed("get"), self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else _activity(row)

    def recent(self, limit: int) -> tuple[Activity, ...]:
        """The `limit` most recent activities of all users, newest first."""
        query = (select(activities)
                 .order_by(activities.c.activity_time.desc(), activities.c.user_id.desc(),
                           activities.c.activity_id.desc())
                 .limit(limit))
        with self._timed("recent"), self.engine.connect() as connection:
            return tuple(_activity(row) for row in connection.execute(query))

    def delete_user(self, user_id: str) -> int:
        """Delete the user's whole history; returns how many activities it held."""
        with self._timed("delete_user"), self.engine.begin() as connection:
            return connection.execute(
                delete(activities).where(activities.c.user_id == user_id)).rowcount

    def _insert_ignoring_duplicates(self) -> Insert:
        # Both dialects spell "skip rows whose key exists" the same way, each in its module.
        key = [activities.c.user_id, activities.c.activity_id]
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(activities).on_conflict_do_nothing(index_elements=key)
        return sqlite.insert(activities).on_conflict_do_nothing(index_elements=key)

    @contextmanager
    def _timed(self, operation: Operation) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._timer.observe(operation, time.perf_counter() - started)


def _activity(row: Row[Any]) -> Activity:
    return Activity(user_id=row.user_id, activity_id=row.activity_id,
                    activity_time=row.activity_time, content_id=row.content_id,
                    kind=ActivityKind(row.kind),
                    # Read-only: the cache shares one Activity between all its readers.
                    payload=MappingProxyType(dict(row.payload)))
