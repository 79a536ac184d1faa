"""What changed between two looks at a run: the run's own state and each stage's.

A follower that polls a run sees snapshots, not transitions. :func:`state_changes` turns
two consecutive snapshots into the changes a reader should hear about, in a stable order
(the run first, then its stages in pipeline order), so a log of them reads like the run's
history. It works on plain data, not on the store's records, so the domain stays free of
storage; the caller adapts whatever it reads into :class:`RunSnapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.domain.states import State

__all__ = ["RunSnapshot", "StateChange", "Status", "state_changes"]


@dataclass(frozen=True, slots=True)
class Status:
    """A run or one of its stages as one snapshot shows it."""

    state: State
    reason: str = ""
    message: str = ""
    duration_seconds: float | None = None
    """From start to finish; None until both are known."""


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """The run and its stages, keyed by stage ref in pipeline order."""

    run: Status
    stages: tuple[tuple[str, Status], ...] = ()


@dataclass(frozen=True, slots=True)
class StateChange:
    """One subject seen in a new state: the run itself (``stage`` is None) or a stage."""

    stage: str | None
    previous: State | None
    """The state the previous snapshot showed; None when this is the first sight."""
    status: Status

    @property
    def is_run(self) -> bool:
        return self.stage is None


def state_changes(previous: RunSnapshot | None, current: RunSnapshot) -> list[StateChange]:
    """The changes of state from ``previous`` to ``current``, the run first, then the
    stages in ``current``'s order.

    Whatever ``previous`` did not show (no previous snapshot at all, or a stage the
    pipeline added since) is reported in the state it now has, except a stage first seen
    queued: a release plans dozens of stages, and each is heard of when it starts (or is
    skipped). A subject whose state is unchanged is not reported,
    whatever happened to its reason, message or duration; a stage that went through
    several states between two snapshots is reported once, in the last. Stages that
    ``current`` no longer shows are ignored.
    """
    before = dict(previous.stages) if previous is not None else {}
    changes: list[StateChange] = []
    run_before = previous.run.state if previous is not None else None
    if current.run.state is not run_before:
        changes.append(StateChange(None, run_before, current.run))
    for ref, status in current.stages:
        stage_before = before[ref].state if ref in before else None
        if stage_before is None and status.state is State.QUEUED:
            continue
        if status.state is not stage_before:
            changes.append(StateChange(ref, stage_before, status))
    return changes
