"""Which unfinished runs have lost their process, judged from the store's record and
Prefect's word on the flow run. Pure: the evidence comes in as plain data.

A run is abandoned only on evidence, never on silence: when Prefect cannot be asked, no run
is judged (:class:`~pipelines.sweeper.Sweeper` skips the pass). The evidence is one of:

* the flow run no longer exists in Prefect (deleted);
* Prefect says the flow run ended (completed, failed, crashed, cancelled) and the run is
  still unfinished a grace period later (the flow's last write may be in flight);
* Prefect says it runs (or is about to) but the flow has not beaten its heartbeat for
  longer than the limit: its process died with its worker, so nobody told Prefect.

A run waiting for a judgment has no process (Prefect suspended the flow run), so its
heartbeat says nothing; it is abandoned only when Prefect says its flow run is gone or
ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shipyard.domain.states import State

__all__ = ["FlowRunView", "RunView", "abandonment"]

FINAL_FLOW_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
_LIVE_FLOW_STATES = frozenset({"RUNNING", "PENDING"})


@dataclass(frozen=True, slots=True)
class RunView:
    """What the store says of a run: its state, when it was created and started, when its
    flow last beat, and its flow run (None for a run no flow run has taken)."""

    state: State
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    flow_run_id: str | None


@dataclass(frozen=True, slots=True)
class FlowRunView:
    """What Prefect says of a flow run: its state type and message, and since when."""

    state: str
    message: str
    since: datetime | None


def abandonment(run: RunView, flow_run: FlowRunView | None, *, now: datetime,
                heartbeat_limit: timedelta, grace: timedelta) -> str | None:
    """The evidence that ``run`` lost its process, or None while it may still be alive.
    ``flow_run`` is Prefect's answer for the run's flow run, None when Prefect no longer
    has it (ask only about runs with a flow run)."""
    if run.state.is_terminal or run.flow_run_id is None:
        return None  # final, or a queued run still waiting to be handed over
    if flow_run is None:
        return f"Prefect no longer has its flow run {run.flow_run_id}"
    if flow_run.state in FINAL_FLOW_STATES:
        ended = flow_run.since or now
        if now - ended < grace:
            return None
        said = f": {flow_run.message}" if flow_run.message else ""
        return (f"its flow run {run.flow_run_id} ended {flow_run.state} "
                f"{_ago(now - ended)} ago{said}, and the run never settled")
    if flow_run.state not in _LIVE_FLOW_STATES or run.state is State.WAITING:
        return None  # scheduled, paused, suspended, cancelling: no process to beat
    alive = run.heartbeat_at or run.started_at or run.created_at
    if now - alive <= heartbeat_limit:
        return None
    return (f"no heartbeat for {_ago(now - alive)} (limit {_ago(heartbeat_limit)}) while "
            f"Prefect says its flow run {run.flow_run_id} is {flow_run.state}: the flow's "
            "process is gone")


def _ago(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
