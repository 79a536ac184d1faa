"""The reads the web UI needs beyond :class:`~shipyard.store.Store`'s own: a filtered run
list paged by keyset, typical stage durations, and a feed of changes to follow live.

Keyset paging (``created_at, id`` below the last row seen) costs the same on page 1 and
page 1,000, unlike ``OFFSET``; the cursor is opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select

from shipyard.domain.states import State
from shipyard.store.models import (
    PipelineRun,
    StageLog,
    StageRun,
    StateTransition,
    comparable_id,
)
from shipyard.store.records import RunRecord
from shipyard.store.store import Store, _run_record

__all__ = ["BadCursor", "Change", "LogLine", "RunBrowser", "RunFilters", "RunPage"]

TYPICAL_SAMPLE = 20
"""How many recent successful runs of the same stage make its typical duration."""


class BadCursor(ValueError):
    """A page cursor that this code did not hand out."""


@dataclass(frozen=True)
class RunFilters:
    """What the run list shows; an empty field does not filter."""

    app: str | None = None
    state: State | None = None
    branch: str | None = None
    trigger: str | None = None
    pipeline: str | None = None


@dataclass(frozen=True)
class RunPage:
    runs: list[RunRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class Change:
    """One state transition of a run or one of its stages (``stage_ref`` empty for the
    run), as the live feed carries it."""

    id: int
    run_id: str
    stage_ref: str
    to_state: State
    reason: str
    message: str
    at: datetime


@dataclass(frozen=True)
class LogLine:
    """A new chunk of a stage's log, as the live feed carries it."""

    id: int
    run_id: str
    stage_ref: str
    stream: str
    text: str
    at: datetime


class RunBrowser:
    """Read-only queries over a store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def page(self, filters: RunFilters, *, limit: int = 50,
             cursor: str | None = None) -> RunPage:
        """The newest runs matching ``filters`` after ``cursor`` (from a previous page)."""
        query = select(PipelineRun).order_by(PipelineRun.created_at.desc(),
                                             PipelineRun.id.desc()).limit(limit + 1)
        if filters.app:
            query = query.where(PipelineRun.app == filters.app)
        if filters.state:
            query = query.where(PipelineRun.state == filters.state.value)
        if filters.branch:
            query = query.where(PipelineRun.ref == filters.branch)
        if filters.trigger:
            query = query.where(PipelineRun.trigger == filters.trigger)
        if filters.pipeline:
            query = query.where(PipelineRun.pipeline == filters.pipeline)
        if cursor:
            at, run_id = decode_cursor(cursor)
            query = query.where(or_(PipelineRun.created_at < at,
                                    and_(PipelineRun.created_at == at,
                                         PipelineRun.id < run_id)))
        with self.store.reading() as session:
            rows = list(session.scalars(query))
        more = len(rows) > limit
        runs = [_run_record(r, with_stages=False) for r in rows[:limit]]
        return RunPage(runs, encode_cursor(runs[-1]) if more and runs else None)

    def typical_stage_seconds(self, pipeline: str, app: str | None) -> dict[str, float]:
        """The median duration of each stage over the last :data:`TYPICAL_SAMPLE` times it
        succeeded in runs of the same pipeline and app."""
        query = (select(StageRun.ref, StageRun.started_at, StageRun.finished_at)
                 .join(PipelineRun)
                 .where(PipelineRun.pipeline == pipeline,
                        StageRun.state == State.SUCCEEDED.value,
                        StageRun.started_at.is_not(None), StageRun.finished_at.is_not(None))
                 .order_by(StageRun.id.desc()).limit(TYPICAL_SAMPLE * 60))
        query = query.where(PipelineRun.app == app if app else PipelineRun.app.is_(None))
        samples: dict[str, list[float]] = defaultdict(list)
        with self.store.reading() as session:
            for ref, started, finished in session.execute(query):
                if started is not None and finished is not None and \
                        len(samples[ref]) < TYPICAL_SAMPLE:
                    samples[ref].append((finished - started).total_seconds())
        return {ref: statistics.median(values) for ref, values in samples.items()}

    def last_change_id(self) -> int:
        """The newest transition's id (0 for none): where a new follower starts."""
        with self.store.reading() as session:
            newest = session.scalar(select(StateTransition.id)
                                    .order_by(StateTransition.id.desc()).limit(1))
            return newest or 0

    def last_log_id(self) -> int:
        with self.store.reading() as session:
            newest = session.scalar(select(StageLog.id).order_by(StageLog.id.desc()).limit(1))
            return newest or 0

    def changes_after(self, last_id: int, *, run_id: str | None = None,
                      limit: int = 500) -> list[Change]:
        """Transitions newer than ``last_id`` (of one run, or all), oldest first."""
        query = (select(StateTransition).where(StateTransition.id > comparable_id(last_id))
                 .order_by(StateTransition.id).limit(limit))
        if run_id:
            query = query.where(StateTransition.run_id == run_id)
        with self.store.reading() as session:
            return [Change(r.id, r.run_id, r.stage_ref, State(r.to_state), r.reason,
                           r.message, r.at) for r in session.scalars(query)]

    def logs_after(self, last_id: int, *, run_id: str | None = None,
                   limit: int = 500) -> list[LogLine]:
        """Log chunks newer than ``last_id`` (of one run, or all), oldest first."""
        query = (select(StageLog, StageRun.run_id, StageRun.ref).join(StageRun)
                 .where(StageLog.id > comparable_id(last_id)).order_by(StageLog.id)
                 .limit(limit))
        if run_id:
            query = query.where(StageRun.run_id == run_id)
        with self.store.reading() as session:
            return [LogLine(log.id, run_id, ref, log.stream, log.text, log.at)
                    for log, run_id, ref in session.execute(query)]

    def distinct_values(self) -> dict[str, list[str]]:
        """The apps, triggers and pipelines seen, for the run list's filter choices."""
        out: dict[str, list[str]] = {}
        with self.store.reading() as session:
            for name, column in (("app", PipelineRun.app), ("trigger", PipelineRun.trigger),
                                 ("pipeline", PipelineRun.pipeline)):
                values = session.scalars(select(column).distinct().where(column.is_not(None))
                                         .order_by(column).limit(200))
                out[name] = [v for v in values if v]
        return out


def encode_cursor(run: RunRecord) -> str:
    raw = f"{run.created_at.isoformat()}|{run.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) of the last run of the previous page; :class:`BadCursor`
    otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, run_id = raw.split("|", 1)
        parsed = datetime.fromisoformat(at)
        # The store compares in UTC, which a time hours from year 1 or 9999 cannot be in.
        in_utc = parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as err:
        raise BadCursor(f"cursor: {cursor!r} is not a page cursor; start again from the "
                        "first page (leave cursor out)") from err
    if in_utc is None or not run_id.isalnum():
        raise BadCursor(f"cursor: {cursor!r} is not a page cursor; start again from the "
                        "first page (leave cursor out)")
    return in_utc, run_id
