"""What the store hands out: frozen plain records, never live ORM objects.

Callers (stages, the CLI, the UI) read these without a session and without SQLAlchemy, and
cannot change state behind the store's back by setting an attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State

__all__ = [
    "ArtifactRecord",
    "AuditRecord",
    "DeliveryRecord",
    "LogChunk",
    "ReleaseRecord",
    "RunRecord",
    "StageRecord",
    "TransitionRecord",
]


@dataclass(frozen=True, slots=True)
class StageRecord:
    ref: str
    name: str
    requires: tuple[str, ...]
    state: State
    reason: str
    message: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    outputs: dict[str, Any] = field(default_factory=dict)
    log_lines: int = 0
    """Lines of its log the store keeps (at most its cap)."""
    log_lines_dropped: int = 0
    """Lines past the cap: only the stage's log file has them."""

    @property
    def spec(self) -> StageSpec:
        return StageSpec(self.ref, self.requires, self.name)

    @property
    def duration_seconds(self) -> float | None:
        """Seconds between start and finish; None until both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    pipeline: str
    app: str | None
    trigger: str
    actor: str
    repo_url: str | None
    ref: str | None
    commit_sha: str | None
    parameters: dict[str, Any]
    state: State
    reason: str
    message: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    prefect_flow_run_id: str | None
    restarted_from: str | None
    stages: tuple[StageRecord, ...] = ()
    heartbeat_at: datetime | None = None

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def stage(self, ref: str) -> StageRecord:
        """The stage named ``ref``; KeyError if the run has none."""
        for stage in self.stages:
            if stage.ref == ref:
                return stage
        raise KeyError(ref)


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    stage_ref: str  # empty for the run itself
    from_state: State | None
    to_state: State
    reason: str
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LogChunk:
    id: int
    stage_ref: str
    at: datetime
    stream: str
    text: str


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    id: int
    run_id: str
    stage_ref: str
    app: str
    kind: str
    name: str
    tag: str
    digest: str
    commit_sha: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    id: int
    app: str
    version: str
    environment: str
    kind: str
    digest: str
    manifests: str
    run_id: str | None
    source_release_id: int | None
    actor: str
    why: str
    created_at: datetime
    slot: str = ""


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """A switch intent (see :class:`~shipyard.store.models.SwitchIntent`)."""

    id: int
    run_id: str | None
    app: str
    environment: str
    kind: str
    version: str
    slot: str
    digest: str
    manifests: str
    source_release_id: int | None
    actor: str
    why: str
    created_at: datetime
    settled_at: datetime | None
    outcome: str
    release_id: int | None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    delivery_id: str
    event: str
    received_at: datetime
    outcome: str
    detail: str
    run_id: str | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    subject_kind: str
    subject_id: str
    details: dict[str, Any]
