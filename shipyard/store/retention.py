"""Retention: runs that ended long ago and old webhook deliveries are deleted, in batches
(``shipyard gc``).

A run goes with everything that is only about it: its stages, their logs, its
transitions, approvals and artifacts. What the history still needs stays, however old:

* a run a release names (``releases.run_id``): the release history links to it;
* a run that built an image some release deployed: DORA's lead time starts at the commit
  time its checkout recorded (:mod:`shipyard.store.deliveries`);
* a run holding a deploy lock, and every run not yet ended;
* a run another run that stays was restarted from: a restart reads it while it runs, and
  ``restarted_from`` must name a run.

Runs are taken newest first: a restart is always newer than the run it restarted, so by
the time a run is looked at, every restart of it is gone or known to stay. A webhook
delivery that names a deleted run keeps its delivery id, so a redelivery still starts
nothing, and forgets the run. Each batch is one short write transaction: webhooks and
flows writing meanwhile wait for one batch, not for the whole sweep.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from shipyard.store.models import (
    Approval,
    Artifact,
    DeployLock,
    PipelineRun,
    Release,
    StageLog,
    StageRun,
    StateTransition,
    SwitchIntent,
    WebhookDelivery,
)
from shipyard.store.store import Store

__all__ = ["Retention", "RetentionReport"]

BATCH = 200
"""Runs, or deliveries, per write transaction."""

_RELEASED = select(Release.run_id).where(Release.run_id.is_not(None))
_BUILT_A_RELEASED_IMAGE = select(Artifact.run_id).where(
    Artifact.digest.in_(select(Release.digest)))
_LOCKING = select(DeployLock.run_id)
# A pending intent is the drift reconciler's evidence: its run stays until it is settled.
_INTENDING = select(SwitchIntent.run_id).where(SwitchIntent.settled_at.is_(None),
                                               SwitchIntent.run_id.is_not(None))


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What a sweep deleted, or would delete (``dry_run``)."""

    runs: int = 0
    stages: int = 0
    log_chunks: int = 0
    transitions: int = 0
    approvals: int = 0
    artifacts: int = 0
    deliveries: int = 0
    kept_runs: int = 0
    """Runs that ended before the cutoff but stay (see the module)."""
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class _Batch:
    seen: int
    last: tuple[datetime, str] | None
    going: list[str]
    restarts: list[str]
    counts: dict[str, int]


class Retention:
    """Deletes what is past its retention from a store's database."""

    def __init__(self, store: Store, *, batch_size: int = BATCH) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be 1 or more")
        self.store = store
        self.batch_size = batch_size

    def delete_expired(
        self, *, runs_before: datetime, deliveries_before: datetime, dry_run: bool = False,
        on_runs: Callable[[Sequence[str]], None] = lambda run_ids: None,
    ) -> RetentionReport:
        """Delete the runs that ended before ``runs_before`` (but those the module says
        stay) and the webhook deliveries received before ``deliveries_before``, a batch at
        a time; with ``dry_run``, count them and delete nothing. ``on_runs`` gets the ids
        of each batch of runs deleted (or that would be), once it is committed."""
        deliveries = self._expire_deliveries(deliveries_before, dry_run)
        with self.store.reading() as session:
            ended_before = session.scalar(select(func.count()).select_from(PipelineRun)
                                          .where(PipelineRun.finished_at < runs_before)) or 0
        totals: Counter[str] = Counter()
        doomed_restarts: set[str] = set()
        cursor: tuple[datetime, str] | None = None
        while True:
            batch = self._run_batch(runs_before, cursor, doomed_restarts, dry_run)
            if not batch.seen:
                break
            cursor = batch.last
            doomed_restarts.update(batch.restarts)
            totals.update(batch.counts)
            if batch.going:
                on_runs(batch.going)
        return RetentionReport(
            runs=totals["runs"], stages=totals["stages"], log_chunks=totals["log_chunks"],
            transitions=totals["transitions"], approvals=totals["approvals"],
            artifacts=totals["artifacts"], deliveries=deliveries,
            kept_runs=ended_before - totals["runs"], dry_run=dry_run)

    def _expire_deliveries(self, before: datetime, dry_run: bool) -> int:
        old = WebhookDelivery.received_at < before
        if dry_run:
            with self.store.reading() as session:
                return session.scalar(
                    select(func.count()).select_from(WebhookDelivery).where(old)) or 0

        def work(session: Session) -> int:
            ids = list(session.scalars(select(WebhookDelivery.delivery_id).where(old)
                                       .order_by(WebhookDelivery.received_at)
                                       .limit(self.batch_size)))
            if ids:
                session.execute(delete(WebhookDelivery)
                                .where(WebhookDelivery.delivery_id.in_(ids))
                                .execution_options(synchronize_session=False))
            return len(ids)

        deleted = 0
        while found := self.store.writing(work):
            deleted += found
        return deleted

    def _run_batch(self, before: datetime, cursor: tuple[datetime, str] | None,
                   doomed_restarts: set[str], dry_run: bool) -> _Batch:
        def work(session: Session) -> _Batch:
            rows = list(session.execute(_candidates(before, cursor, self.batch_size)))
            if not rows:
                return _Batch(0, cursor, [], [], {})
            ids = {row.id for row in rows}
            # A run stays while a run that stays restarted from it (see the module).
            restarted = session.execute(select(PipelineRun.restarted_from, PipelineRun.id)
                                        .where(PipelineRun.restarted_from.in_(ids)))
            needed = {source for source, restart in restarted
                      if restart not in ids and restart not in doomed_restarts}
            going = [row.id for row in rows if row.id not in needed]
            counts = _remove(session, going, dry_run) if going else {}
            return _Batch(len(rows), (rows[-1].created_at, rows[-1].id), going,
                          [row.id for row in rows if row.restarted_from and row.id in going],
                          counts)

        if dry_run:
            with self.store.reading() as session:
                return work(session)
        return self.store.writing(work)


def _candidates(before: datetime, cursor: tuple[datetime, str] | None, limit: int) -> Any:
    """Runs that ended before ``before`` and nothing else needs, newest first, after
    ``cursor`` (created_at, id)."""
    # A run has ended once it has a finished_at: it is set as the run reaches a final
    # state, which only another final one (rolled back) may follow. A run that ended
    # before the cutoff began before it, so the index of created_at and id, read
    # backwards, skips every newer run and needs no sort.
    query = (select(PipelineRun.id, PipelineRun.created_at, PipelineRun.restarted_from)
             .where(PipelineRun.created_at < before, PipelineRun.finished_at < before,
                    PipelineRun.id.not_in(_RELEASED),
                    PipelineRun.id.not_in(_BUILT_A_RELEASED_IMAGE),
                    PipelineRun.id.not_in(_LOCKING),
                    PipelineRun.id.not_in(_INTENDING))
             .order_by(PipelineRun.created_at.desc(), PipelineRun.id.desc()).limit(limit))
    if cursor is not None:
        at, run_id = cursor
        query = query.where(or_(PipelineRun.created_at < at,
                                and_(PipelineRun.created_at == at, PipelineRun.id < run_id)))
    return query


def _remove(session: Session, run_ids: list[str], dry_run: bool) -> dict[str, int]:
    """Delete (or count) the runs and what is only about them, children first: both
    databases check each foreign key as each statement ends."""
    stage_ids = select(StageRun.id).where(StageRun.run_id.in_(run_ids))
    parts: list[tuple[str, Any, Any]] = [
        ("log_chunks", StageLog, StageLog.stage_run_id.in_(stage_ids)),
        ("stages", StageRun, StageRun.run_id.in_(run_ids)),
        ("transitions", StateTransition, StateTransition.run_id.in_(run_ids)),
        ("approvals", Approval, Approval.run_id.in_(run_ids)),
        ("artifacts", Artifact, Artifact.run_id.in_(run_ids)),
        ("intents", SwitchIntent, SwitchIntent.run_id.in_(run_ids)),
        ("runs", PipelineRun, PipelineRun.id.in_(run_ids)),
    ]
    if dry_run:
        return {name: session.scalar(select(func.count()).select_from(model).where(where))
                or 0 for name, model, where in parts}
    session.execute(update(WebhookDelivery).where(WebhookDelivery.run_id.in_(run_ids))
                    .values(run_id=None).execution_options(synchronize_session=False))
    return {name: session.execute(delete(model).where(where)  # type: ignore[attr-defined]
                                  .execution_options(synchronize_session=False)).rowcount
            for name, model, where in parts}
