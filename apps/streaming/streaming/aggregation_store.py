"""The views job's durable state in SQLite (WAL): window counts and, in the same
transaction, where the job is in each partition and its watermark.

Because one transaction holds both the changes a batch made and the offsets after that
batch, a crash leaves the state and the offsets of the same batch: the job resumes right
after the last batch whose changes were kept, so each record changes the windows exactly
once. SQLite (not the log's own segment files) because this state is a keyed table that
is updated in place and queried by content and time range, which is what it is for.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from streaming.windows import WindowChanges

__all__ = ["AggregationStore", "JobCheckpoint", "WindowRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    content_id TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    count INTEGER NOT NULL,
    late INTEGER NOT NULL,
    PRIMARY KEY (content_id, window_start_ms)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS windows_by_start ON windows (window_start_ms);
CREATE TABLE IF NOT EXISTS positions (
    partition INTEGER PRIMARY KEY,
    next_offset INTEGER NOT NULL,
    max_event_ms INTEGER
);
CREATE TABLE IF NOT EXISTS job (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    watermark_ms INTEGER
);
"""


@dataclass(frozen=True, slots=True)
class JobCheckpoint:
    """Where the job is: per partition, the next offset and highest event time seen."""

    next_offsets: dict[int, int]
    max_event_ms: dict[int, int | None]
    watermark_ms: int | None


@dataclass(frozen=True, slots=True)
class WindowRow:
    content_id: str
    window_start_ms: int
    count: int
    late: int


class AggregationStore:
    """One SQLite file, opened by `open` (blocking). Thread-safe: one connection, used
    under a lock (statements are short; WAL lets other tools read the file meanwhile)."""

    def __init__(self, path: Path, *, fsync: bool) -> None:
        self.path = path
        self.fsync = fsync
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # Sorts spill to memory, never to /tmp: the root filesystem is read-only in a pod.
        db.execute("PRAGMA temp_store=MEMORY")
        # FULL: a committed transaction survives a power loss; NORMAL: a process crash.
        db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        db.executescript(_SCHEMA)
        self._connection = db

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise RuntimeError(f"{self.path} is not open")
        return self._connection

    def checkpoint(self) -> JobCheckpoint:
        with self._lock:
            rows = self._db.execute(
                "SELECT partition, next_offset, max_event_ms FROM positions").fetchall()
            job = self._db.execute("SELECT watermark_ms FROM job WHERE id = 1").fetchone()
        return JobCheckpoint(next_offsets={p: o for p, o, _ in rows},
                             max_event_ms={p: m for p, _, m in rows},
                             watermark_ms=None if job is None else job[0])

    def commit_batch(self, changes: WindowChanges, checkpoint: JobCheckpoint,
                     expire_before_ms: int | None = None) -> None:
        """Apply `changes` and record `checkpoint`, atomically. Windows starting before
        `expire_before_ms` are deleted in the same transaction."""
        counted = [(c, s, n, 0) for (c, s), n in changes.counts.items()]
        late = [(c, s, 0, n) for (c, s), n in changes.late.items()]
        positions = [(p, o, checkpoint.max_event_ms.get(p))
                     for p, o in checkpoint.next_offsets.items()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO windows (content_id, window_start_ms, count, late) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (content_id, window_start_ms) "
                    "DO UPDATE SET count = count + excluded.count, late = late + excluded.late",
                    counted + late)
                self._db.executemany(
                    "INSERT OR REPLACE INTO positions (partition, next_offset, max_event_ms) "
                    "VALUES (?, ?, ?)", positions)
                self._db.execute("INSERT OR REPLACE INTO job (id, watermark_ms) VALUES (1, ?)",
                                 (checkpoint.watermark_ms,))
                if expire_before_ms is not None:
                    self._db.execute("DELETE FROM windows WHERE window_start_ms < ?",
                                     (expire_before_ms,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def windows(self, content_id: str | None, from_ms: int | None, to_ms: int | None,
                limit: int) -> list[WindowRow]:
        """Windows starting in [from_ms, to_ms), by start then content id, at most `limit`."""
        clauses: list[str] = []
        arguments: list[str | int] = []
        if content_id is not None:
            clauses.append("content_id = ?")
            arguments.append(content_id)
        if from_ms is not None:
            clauses.append("window_start_ms >= ?")
            arguments.append(from_ms)
        if to_ms is not None:
            clauses.append("window_start_ms < ?")
            arguments.append(to_ms)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = ("SELECT content_id, window_start_ms, count, late FROM windows "  # noqa: S608
                 f"{where} ORDER BY window_start_ms, content_id LIMIT ?")
        with self._lock:
            rows = self._db.execute(query, [*arguments, limit]).fetchall()
        return [WindowRow(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
