"""The reads behind Shipyard's own metrics (``GET /metrics``, :mod:`ui.metrics`).

A scrape every 15 s must cost little whatever the history holds, so nothing here reads
the history: the events are read past a mark the caller keeps (state changes by primary
key, webhook deliveries and audit entries by their indexed time), and the runs not yet
running through ``ix_pipeline_runs_state_created_at``. What is read is plain data; what it
means for a metric is :mod:`ui.metrics`' business.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select

from shipyard.domain.states import TERMINAL_STATES, State
from shipyard.store.models import (
    AuditEvent,
    PipelineRun,
    StageRun,
    StateTransition,
    WebhookDelivery,
    comparable_id,
)
from shipyard.store.store import Store

__all__ = ["DeliveryCount", "MetricsQueries", "PendingRuns", "RunEvent", "StageEnd"]

_FINAL = sorted(state.value for state in TERMINAL_STATES)


@dataclass(frozen=True, slots=True)
class RunEvent:
    """A run that started (queued to running) or settled (reached its first final state),
    ``since_created`` seconds after it was recorded."""

    pipeline: str
    from_state: State
    to_state: State
    reason: str
    since_created: float


@dataclass(frozen=True, slots=True)
class StageEnd:
    """A stage that reached its first final state after it had started, ``seconds`` after
    its start."""

    ref: str
    state: State
    reason: str
    seconds: float


@dataclass(frozen=True, slots=True)
class DeliveryCount:
    """How many deliveries were recorded with ``outcome`` and a detail starting with
    ``kind`` (empty: with none of the kinds asked about)."""

    outcome: str
    kind: str
    count: int


@dataclass(frozen=True, slots=True)
class PendingRuns:
    """The runs of ``pipeline`` in ``state`` now, queued or waiting for a judgment, and
    how many of them a Prefect flow run has taken."""

    pipeline: str
    state: State
    count: int
    handed_over: int


class MetricsQueries:
    """Read-only aggregates over a store, each bounded by what is new or unfinished."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- state changes, by id --------------------------------------------------------------

    def newest_transition_id(self) -> int:
        """The newest state change's id (0 for none)."""
        with self.store.reading() as session:
            return session.scalar(select(func.max(StateTransition.id))) or 0

    def transition_id_before(self, after_id: int, before: datetime) -> int:
        """The newest state change past ``after_id`` made before ``before``; ``after_id``
        when there is none. Reads only the changes past ``after_id``."""
        with self.store.reading() as session:
            found = session.scalar(select(func.max(StateTransition.id))
                                   .where(StateTransition.id > comparable_id(after_id),
                                          StateTransition.at < before))
        return max(found or 0, after_id)

    def run_events(self, after_id: int, up_to_id: int | None = None) -> list[RunEvent]:
        """The runs that started or settled in the state changes past ``after_id`` (up to
        ``up_to_id``, included), oldest first. A settled run moving on (a succeeded run
        rolled back later) is no second settling."""
        change = StateTransition
        query = (select(PipelineRun.pipeline, change.from_state, change.to_state,
                        change.reason, PipelineRun.created_at, change.at)
                 .join(PipelineRun, PipelineRun.id == change.run_id)
                 .where(change.id > comparable_id(after_id), change.stage_ref == "",
                        or_(and_(change.from_state == State.QUEUED.value,
                                 change.to_state == State.RUNNING.value),
                            and_(change.to_state.in_(_FINAL),
                                 change.from_state.not_in(_FINAL))))
                 .order_by(change.id))
        if up_to_id is not None:
            query = query.where(change.id <= comparable_id(up_to_id))
        with self.store.reading() as session:
            # ``was`` is never None here: only a run's creation has no state before it.
            return [RunEvent(pipeline, State(was or State.QUEUED), State(to), reason,
                             (at - created_at).total_seconds())
                    for pipeline, was, to, reason, created_at, at in session.execute(query)]

    def stage_ends(self, after_id: int, up_to_id: int | None = None) -> list[StageEnd]:
        """The stages that had started and reached their first final state in the state
        changes past ``after_id`` (up to ``up_to_id``, included), oldest first. Their
        time is taken from the change itself: a later rollback moves the stage's
        ``finished_at``, not the time it ran."""
        change = StateTransition
        query = (select(StageRun.ref, change.to_state, change.reason, StageRun.started_at,
                        change.at)
                 .join(StageRun, and_(StageRun.run_id == change.run_id,
                                      StageRun.ref == change.stage_ref))
                 .where(change.id > comparable_id(after_id), change.stage_ref != "",
                        change.to_state.in_(_FINAL), change.from_state.not_in(_FINAL),
                        StageRun.started_at.is_not(None))
                 .order_by(change.id))
        if up_to_id is not None:
            query = query.where(change.id <= comparable_id(up_to_id))
        with self.store.reading() as session:
            return [StageEnd(ref, State(to), reason, (at - started_at).total_seconds())
                    for ref, to, reason, started_at, at in session.execute(query)
                    if started_at is not None]

    # -- deliveries and audit entries, by time -----------------------------------------

    def deliveries(self, since: datetime, before: datetime | None = None, *,
                   kinds: Sequence[str] = ()) -> list[DeliveryCount]:
        """Webhook deliveries received from ``since`` (included) to ``before`` (not), by
        outcome and by which of ``kinds`` their detail starts with (as ``"<kind>: "``).
        One pass over ``ix_webhook_deliveries_received_at``'s range."""
        received = WebhookDelivery.received_at
        # Summed rather than grouped by a CASE: PostgreSQL would see the CASE's parameters
        # in SELECT and GROUP BY as different expressions.
        matches = [func.sum(case((WebhookDelivery.detail.startswith(f"{kind}: ",
                                                                    autoescape=True), 1),
                                 else_=0)) for kind in kinds]
        query = (select(WebhookDelivery.outcome, func.count(), *matches)
                 .where(received >= since).group_by(WebhookDelivery.outcome))
        if before is not None:
            query = query.where(received < before)
        counts: list[DeliveryCount] = []
        with self.store.reading() as session:
            for outcome, total, *per_kind in session.execute(query):
                matched = [int(n or 0) for n in per_kind]
                counts.extend(DeliveryCount(outcome, kind, n)
                              for kind, n in zip(kinds, matched, strict=True) if n)
                if rest := total - sum(matched):
                    counts.append(DeliveryCount(outcome, "", rest))
        return counts

    def audit_actions(self, actions: Collection[str], since: datetime,
                      before: datetime | None = None) -> dict[str, int]:
        """How many audit entries of each of ``actions`` were written from ``since``
        (included) to ``before`` (not); through the index on their time."""
        query = (select(AuditEvent.action, func.count())
                 .where(AuditEvent.at >= since, AuditEvent.action.in_(list(actions)))
                 .group_by(AuditEvent.action))
        if before is not None:
            query = query.where(AuditEvent.at < before)
        with self.store.reading() as session:
            return {action: count for action, count in session.execute(query)}

    # -- now -----------------------------------------------------------------------------

    def pending_runs(self) -> list[PendingRuns]:
        """The runs queued or waiting for a judgment now, by pipeline and state."""
        query = (select(PipelineRun.pipeline, PipelineRun.state, func.count(),
                        func.count(PipelineRun.prefect_flow_run_id))
                 .where(PipelineRun.state.in_([State.QUEUED.value, State.WAITING.value]))
                 .group_by(PipelineRun.pipeline, PipelineRun.state))
        with self.store.reading() as session:
            return [PendingRuns(pipeline, State(state), count, handed_over)
                    for pipeline, state, count, handed_over in session.execute(query)]
