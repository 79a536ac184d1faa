"""The store's tables, as SQLAlchemy 2 typed ORM classes.

The store is the truth of what was decided and why: runs and their stages with every
transition, stage logs, the artifacts built, the releases made, the approvals given, the
webhook deliveries seen and an audit trail of who did what. Schema changes go through an
Alembic migration in ``migrations/versions``; a test checks the two never drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "LARGEST_ID",
    "ApiToken",
    "Approval",
    "Artifact",
    "AuditEvent",
    "Base",
    "DeployLock",
    "PipelineRun",
    "Release",
    "StageLog",
    "StageRun",
    "StateTransition",
    "SwitchIntent",
    "UiSession",
    "User",
    "WebhookDelivery",
    "comparable_id",
]

# Deterministic constraint names, so migrations can refer to them on every backend.
_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LARGEST_ID = 2**63 - 1
"""The largest integer id a row can have (SQLite's INTEGER; PostgreSQL's columns hold less).
A number past it names no row, yet SQLite refuses to compare a column with it
(``OverflowError``), so a lookup by a number from outside must answer for it without asking."""


def comparable_id(number: int) -> int:
    """``number`` as SQLite can compare it with an id column: past either end of the ids,
    that end, which every id lies on the same side of."""
    return max(-LARGEST_ID, min(number, LARGEST_ID))


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    SQLite keeps no time zone, so values are stored as naive UTC there and made aware again
    on the way out; a naive datetime going in is a bug and is refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class PipelineRun(Base):
    """One execution of a pipeline (ci, cd, release, promote, rollback)."""

    __tablename__ = "pipeline_runs"
    # The run list shows the newest first, filtered by any of these columns: each index
    # finds a filter's rows already in that order, so a page reads ~50 rows, not all of
    # an app's (bench/ui_run_list.py).
    __table_args__ = (
        Index("ix_pipeline_runs_created_at_id", "created_at", "id"),
        *(Index(f"ix_pipeline_runs_{column}_created_at", column, "created_at", "id")
          for column in ("app", "state", "pipeline", "ref", "trigger")),
        # A replayed push is found by its commit (Ledger.accept_delivery).
        Index("ix_pipeline_runs_commit_sha_ref_created_at", "commit_sha", "ref", "created_at"),
        # Deleting a run looks for rows that name it; without an index on each column that
        # does, both databases read the whole table once per run deleted (Retention).
        Index("ix_pipeline_runs_restarted_from", "restarted_from"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(40))
    app: Mapped[str | None] = mapped_column(String(63))
    trigger: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(120), default="")
    repo_url: Mapped[str | None] = mapped_column(String(1000))
    ref: Mapped[str | None] = mapped_column(String(255))
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    prefect_flow_run_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    restarted_from: Mapped[str | None] = mapped_column(ForeignKey("pipeline_runs.id"))
    # When the flow running it last said it was alive (the sweeper's evidence of a dead
    # process: stages/lifecycle.running beats while the flow's body runs).
    heartbeat_at: Mapped[datetime | None]

    stages: Mapped[list[StageRun]] = relationship(
        back_populates="run", order_by="StageRun.position", cascade="all, delete-orphan"
    )


class StageRun(Base):
    """One stage of a run; ``requires`` holds the refs of the stages it waits for."""

    __tablename__ = "stage_runs"
    __table_args__ = (UniqueConstraint("run_id", "ref", name="uq_stage_runs_run_id_ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    ref: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200), default="")
    position: Mapped[int] = mapped_column(Integer)
    requires: Mapped[list[str]] = mapped_column(default=list)
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prefect_task_run_id: Mapped[str | None] = mapped_column(String(36))
    log_lines: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Lines of its log in ``stage_logs``: at most the store's cap (the marker not
    counted)."""
    log_lines_dropped: Mapped[int] = mapped_column(Integer, default=0,
                                                   server_default=text("0"))
    """Lines past the cap, not kept in ``stage_logs`` (the flows' log file has them)."""

    run: Mapped[PipelineRun] = relationship(back_populates="stages")


class StateTransition(Base):
    """Every accepted change of state of a run (``stage_ref`` empty) or of one of its stages."""

    __tablename__ = "state_transitions"
    __table_args__ = (Index("ix_state_transitions_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    stage_ref: Mapped[str] = mapped_column(String(100), default="")
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]


class StageLog(Base):
    """A chunk of a stage's output, in order; appended while the stage runs, so it can be
    followed live."""

    __tablename__ = "stage_logs"
    __table_args__ = (Index("ix_stage_logs_stage_run_id_id", "stage_run_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage_run_id: Mapped[int] = mapped_column(ForeignKey("stage_runs.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    stream: Mapped[str] = mapped_column(String(10), default="stdout")
    text: Mapped[str] = mapped_column(Text)


class Artifact(Base):
    """Something a run produced that later stages deploy: above all, an image by digest."""

    __tablename__ = "artifacts"
    __table_args__ = (Index("ix_artifacts_app_created_at", "app", "created_at"),
                      Index("ix_artifacts_run_id", "run_id"),
                      # An image's build run, from a release's digest (DORA, gc).
                      Index("ix_artifacts_digest", "digest"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    stage_ref: Mapped[str] = mapped_column(String(100))
    app: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(20), default="image")
    name: Mapped[str] = mapped_column(String(500))
    tag: Mapped[str] = mapped_column(String(128), default="")
    digest: Mapped[str] = mapped_column(String(80))
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Release(Base):
    """A version of an app put into an environment: the exact manifests and digest, who and
    why. A rollback is a new release that re-applies an earlier one's record."""

    __tablename__ = "releases"
    __table_args__ = (Index("ix_releases_app_environment_id", "app", "environment", "id"),
                      Index("ix_releases_run_id", "run_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(128))
    environment: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(20))  # deploy, promote, rollback
    digest: Mapped[str] = mapped_column(String(80))
    manifests: Mapped[str] = mapped_column(Text, default="")
    # The versioned Deployment of a red/black release (v007); empty for a rolling one.
    slot: Mapped[str] = mapped_column(String(16), default="", server_default=text("''"))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("pipeline_runs.id"))
    source_release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    actor: Mapped[str] = mapped_column(String(120))
    why: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class SwitchIntent(Base):
    """What a run is about to make an environment serve, written before it moves traffic
    (a red/black switch, a rollback's switch back) and settled when the release is
    recorded. One left pending by a dead run tells the drift reconciler which release the
    cluster may serve unrecorded (see :mod:`shipyard.domain.drift`)."""

    __tablename__ = "switch_intents"
    __table_args__ = (Index("ix_switch_intents_pending", "settled_at", "app", "environment"),
                      Index("ix_switch_intents_run_id", "run_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("pipeline_runs.id"))
    app: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(20))  # the release it records: deploy, ...
    version: Mapped[str] = mapped_column(String(128))
    slot: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(80))
    manifests: Mapped[str] = mapped_column(Text, default="")
    source_release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    actor: Mapped[str] = mapped_column(String(120))
    why: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    settled_at: Mapped[datetime | None]
    # recorded (its run recorded the release), repaired (the reconciler did), or
    # not-applied (the cluster never served it)
    outcome: Mapped[str] = mapped_column(String(20), default="")
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))


class DeployLock(Base):
    """Which run deploys an app into an environment now: one at a time (the primary key),
    taken over only from a run that has ended."""

    __tablename__ = "deploy_locks"

    app: Mapped[str] = mapped_column(String(63), primary_key=True)
    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    acquired_at: Mapped[datetime]


class Approval(Base):
    """A manual judgment's answer."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_run_id", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    stage_ref: Mapped[str] = mapped_column(String(100))
    decision: Mapped[str] = mapped_column(String(20))  # approved, rejected
    actor: Mapped[str] = mapped_column(String(120))
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]


class WebhookDelivery(Base):
    """A webhook delivery, keyed by its unique delivery id so a redelivery starts nothing."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_received_at", "received_at"),
                      Index("ix_webhook_deliveries_run_id", "run_id"))

    delivery_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    event: Mapped[str] = mapped_column(String(50))
    received_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(20))  # accepted, ignored
    detail: Mapped[str] = mapped_column(Text, default="")
    run_id: Mapped[str | None] = mapped_column(ForeignKey("pipeline_runs.id"))


class AuditEvent(Base):
    """Who did what to which thing, and when."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_subject", "subject_kind", "subject_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(60))
    subject_kind: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class User(Base):
    """A person who signs in to the web UI: a role and an Argon2 password hash."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class ApiToken(Base):
    """A bearer token for the API: only its SHA-256 is kept (see shipyard.domain.access)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    owner: Mapped[str] = mapped_column(String(63))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class UiSession(Base):
    """A sign-in to the web UI. The browser's cookie holds a random 256-bit id; only its
    SHA-256 is kept, so the table holds nothing a thief could sign in with."""

    __tablename__ = "ui_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(
        ForeignKey("users.name", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    flashes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Messages for the next page (an action's outcome), shown once."""
