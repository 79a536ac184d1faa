"""The store's records of outcomes: artifacts, releases, approvals, webhook deliveries and
the audit trail. Append-only: history is corrected by a new record, never by an edit."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.domain.images import is_digest
from shipyard.domain.pipeline import PipelineGraph, StageSpec
from shipyard.store.models import (
    LARGEST_ID,
    Approval,
    Artifact,
    AuditEvent,
    Base,
    PipelineRun,
    Release,
    SwitchIntent,
    WebhookDelivery,
)
from shipyard.store.records import (
    ArtifactRecord,
    AuditRecord,
    DeliveryRecord,
    IntentRecord,
    ReleaseRecord,
)
from shipyard.store.store import Store

__all__ = ["Ledger"]

_DECISIONS = ("approved", "rejected")
_INSERT_DELIVERY = insert(Base.metadata.tables[WebhookDelivery.__tablename__])
_RELEASE_KINDS = ("deploy", "promote", "rollback")
_RUNS = Base.metadata.tables[PipelineRun.__tablename__]
# ix_pipeline_runs_commit_sha_ref_created_at finds a commit's runs of the window (one, or a
# few); the rest is checked on those rows. No ORDER BY: SQLite would take the trigger's
# index for its order and read every push of the window. A prepared Core statement: this
# runs inside the webhook's write transaction, where the ORM's overhead would double its
# cost.
_RECENT_RUN = select(_RUNS.c.created_at, _RUNS.c.id).where(
    _RUNS.c.commit_sha == bindparam("commit_sha"), _RUNS.c.ref == bindparam("ref"),
    _RUNS.c.created_at >= bindparam("since"), _RUNS.c.repo_url == bindparam("repo_url"),
    _RUNS.c.trigger == bindparam("trigger"), _RUNS.c.pipeline == bindparam("pipeline"))
_REPLAY_LOCK_CLASS = 0x5E1F  # "push replay", the first of pg_advisory_xact_lock's two keys
_REPLAY_LOCK = select(func.pg_advisory_xact_lock(_REPLAY_LOCK_CLASS, bindparam("key")))


class Ledger:
    """Append-only records over a :class:`Store`'s database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- artifacts ----------------------------------------------------------------------

    def record_artifact(self, *, run_id: str, stage_ref: str, app: str, name: str,
                        digest: str, tag: str = "", kind: str = "image",
                        commit_sha: str | None = None) -> ArtifactRecord:
        """Record something a run built; ``digest`` is ``sha256:`` and 64 hex digits."""
        if not is_digest(digest):
            raise ValueError(f"artifact digest {digest!r} must be 'sha256:' and 64 hex digits")
        at = self.store.clock()

        def work(session: Session) -> ArtifactRecord:
            row = Artifact(run_id=run_id, stage_ref=stage_ref, app=app, kind=kind, name=name,
                           tag=tag, digest=digest, commit_sha=commit_sha, created_at=at)
            session.add(row)
            session.flush()
            return _artifact(row)

        return self.store.writing(work)

    def artifacts(self, *, app: str | None = None, run_id: str | None = None,
                  kind: str | None = None, limit: int = 50) -> list[ArtifactRecord]:
        """Artifacts, newest first: images, and the full logs of stages whose log passed
        the store's cap (kind ``log``)."""
        query = select(Artifact).order_by(Artifact.id.desc()).limit(limit)
        if app:
            query = query.where(Artifact.app == app)
        if run_id:
            query = query.where(Artifact.run_id == run_id)
        if kind:
            query = query.where(Artifact.kind == kind)
        with self.store.reading() as session:
            return [_artifact(row) for row in session.scalars(query)]

    # -- releases -----------------------------------------------------------------------

    def record_release(self, *, app: str, version: str, environment: str, kind: str,
                       digest: str, actor: str, why: str, manifests: str = "",
                       run_id: str | None = None, slot: str = "",
                       source_release_id: int | None = None,
                       intent_id: int | None = None) -> ReleaseRecord:
        """Record that ``version`` of ``app`` is now what ``environment`` should run; with
        ``intent_id``, settle that intent ``recorded`` in the same transaction."""
        if kind not in _RELEASE_KINDS:
            raise ValueError(f"release kind {kind!r} must be one of {', '.join(_RELEASE_KINDS)}")
        if not actor:
            raise ValueError("a release needs an actor: who asked for it")
        at = self.store.clock()

        def work(session: Session) -> ReleaseRecord:
            row = Release(app=app, version=version, environment=environment, kind=kind,
                          digest=digest, manifests=manifests, run_id=run_id, slot=slot,
                          source_release_id=source_release_id, actor=actor, why=why,
                          created_at=at)
            session.add(row)
            session.flush()
            if intent_id is not None:
                session.execute(update(SwitchIntent)
                                .where(SwitchIntent.id == intent_id,
                                       SwitchIntent.settled_at.is_(None))
                                .values(settled_at=at, outcome="recorded", release_id=row.id))
            return _release(row)

        return self.store.writing(work)

    # -- switch intents -----------------------------------------------------------------

    def record_intent(self, *, app: str, environment: str, kind: str, version: str,
                      slot: str, digest: str, actor: str, why: str, manifests: str = "",
                      run_id: str | None = None,
                      source_release_id: int | None = None) -> IntentRecord:
        """Write, before traffic moves, the release a run is about to make ``environment``
        serve; :meth:`record_release` with its id settles it."""
        if kind not in _RELEASE_KINDS:
            raise ValueError(f"intent kind {kind!r} must be one of {', '.join(_RELEASE_KINDS)}")
        at = self.store.clock()

        def work(session: Session) -> IntentRecord:
            row = SwitchIntent(run_id=run_id, app=app, environment=environment, kind=kind,
                               version=version, slot=slot, digest=digest, manifests=manifests,
                               source_release_id=source_release_id, actor=actor or "shipyard",
                               why=why, created_at=at, settled_at=None, outcome="")
            session.add(row)
            session.flush()
            return _intent(row)

        return self.store.writing(work)

    def pending_intents(self, app: str | None = None,
                        environment: str | None = None) -> list[IntentRecord]:
        """Intents not yet settled, oldest first, optionally of one app and environment."""
        query = (select(SwitchIntent).where(SwitchIntent.settled_at.is_(None))
                 .order_by(SwitchIntent.id))
        if app is not None:
            query = query.where(SwitchIntent.app == app)
        if environment is not None:
            query = query.where(SwitchIntent.environment == environment)
        with self.store.reading() as session:
            return [_intent(row) for row in session.scalars(query)]

    def settle_intents(self, intent_ids: Iterable[int], outcome: str) -> None:
        """Settle pending intents with ``outcome`` (``not-applied``: the cluster never
        served them)."""
        at = self.store.clock()
        ids = list(intent_ids)
        if ids:
            self.store.writing(lambda session: session.execute(
                update(SwitchIntent).where(SwitchIntent.id.in_(ids),
                                           SwitchIntent.settled_at.is_(None))
                .values(settled_at=at, outcome=outcome)))

    def release_from_intent(self, intent_id: int, *, why: str) -> ReleaseRecord | None:
        """Record the release a pending intent describes (the switch happened, its record
        was lost) and settle the intent ``repaired``, in one transaction; None when it was
        settled meanwhile."""
        at = self.store.clock()

        def work(session: Session) -> ReleaseRecord | None:
            intent = session.get(SwitchIntent, intent_id, with_for_update=True)
            if intent is None or intent.settled_at is not None:
                return None
            row = Release(app=intent.app, version=intent.version,
                          environment=intent.environment, kind=intent.kind,
                          digest=intent.digest, manifests=intent.manifests,
                          run_id=intent.run_id, slot=intent.slot,
                          source_release_id=intent.source_release_id, actor=intent.actor,
                          why=why, created_at=at)
            session.add(row)
            session.flush()
            intent.settled_at, intent.outcome, intent.release_id = at, "repaired", row.id
            return _release(row)

        return self.store.writing(work)

    def releases(self, app: str, environment: str | None = None, *,
                 limit: int = 50) -> list[ReleaseRecord]:
        """An app's releases, newest first, optionally in one environment."""
        query = select(Release).where(Release.app == app).order_by(Release.id.desc())
        if environment:
            query = query.where(Release.environment == environment)
        with self.store.reading() as session:
            return [_release(row) for row in session.scalars(query.limit(limit))]

    def current_release(self, app: str, environment: str) -> ReleaseRecord | None:
        """What ``environment`` should be running of ``app``, if anything."""
        found = self.releases(app, environment, limit=1)
        return found[0] if found else None

    def all_current_releases(self) -> dict[tuple[str, str], ReleaseRecord]:
        """Per (app, environment), the newest release: what each environment should run."""
        newest = (select(func.max(Release.id))
                  .group_by(Release.app, Release.environment).scalar_subquery())
        with self.store.reading() as session:
            rows = session.scalars(select(Release).where(Release.id.in_(newest)))
            return {(row.app, row.environment): _release(row) for row in rows}

    def release(self, release_id: int) -> ReleaseRecord:
        """Release ``release_id``; LookupError when there is none (ids run from 1 to
        :data:`~shipyard.store.models.LARGEST_ID`)."""
        if not 0 < release_id <= LARGEST_ID:
            raise LookupError(f"no release #{release_id}")
        with self.store.reading() as session:
            row = session.get(Release, release_id)
            if row is None:
                raise LookupError(f"no release #{release_id}")
            return _release(row)

    # -- approvals ----------------------------------------------------------------------

    def record_approval(self, *, run_id: str, stage_ref: str, decision: str, actor: str,
                        comment: str = "") -> None:
        """Record a judgment's answer: ``approved`` or ``rejected``."""
        if decision not in _DECISIONS:
            raise ValueError(f"decision {decision!r} must be 'approved' or 'rejected'")
        at = self.store.clock()
        self.store.writing(lambda s: s.add(Approval(
            run_id=run_id, stage_ref=stage_ref, decision=decision, actor=actor,
            comment=comment, at=at)))

    # -- webhook deliveries -------------------------------------------------------------

    def record_delivery(self, *, delivery_id: str, event: str, outcome: str,
                        detail: str = "", run_id: str | None = None
                        ) -> tuple[DeliveryRecord, bool]:
        """Record a delivery once. Returns the stored record and whether it was new; a
        redelivery (same id), even one racing the first, returns the first's record."""
        at = self.store.clock()

        def work(session: Session) -> DeliveryRecord:
            row = WebhookDelivery(delivery_id=delivery_id, event=event, received_at=at,
                                  outcome=outcome, detail=detail, run_id=run_id)
            session.add(row)
            session.flush()
            return _delivery(row)

        return self._once(delivery_id, work)

    def accept_delivery(self, *, delivery_id: str, event: str, detail: str,
                        pipeline: str, stages: Iterable[StageSpec], trigger: str,
                        actor: str = "", repo_url: str | None = None, ref: str | None = None,
                        commit_sha: str | None = None,
                        parameters: Mapping[str, Any] | None = None,
                        replay_window: timedelta | None = None,
                        duplicate_detail: str = "duplicate",
                        ) -> tuple[DeliveryRecord, bool]:
        """Record a delivery that starts a run, and the queued run, in one transaction.

        Returns the stored delivery (its ``run_id`` the run's) and whether it was new. A
        redelivery, even one racing the first, writes nothing and returns the first's
        record: the unique delivery id refuses the second insert, which rolls the second
        run back with it, so no run is ever recorded without its delivery.

        With ``replay_window``, a delivery under a new id for the same ``repo_url``,
        ``ref`` and ``commit_sha`` as a ``pipeline`` run this ``trigger`` recorded within
        the window starts nothing: it is recorded ``ignored`` with ``duplicate_detail``,
        its ``run_id`` the earlier run's. The look and the write are one transaction under
        a lock on that key (SQLite's write lock, taken at BEGIN; a PostgreSQL advisory
        lock), so two copies racing each other record one run.
        """
        graph = PipelineGraph.of(stages)
        at = self.store.clock()

        def work(session: Session) -> DeliveryRecord:
            if replay_window is not None:
                first = _recent_run(session, pipeline=pipeline, trigger=trigger,
                                    repo_url=repo_url, ref=ref, commit_sha=commit_sha,
                                    since=at - replay_window)
                if first is not None:
                    session.connection().execute(_INSERT_DELIVERY, {
                        "delivery_id": delivery_id, "event": event, "received_at": at,
                        "outcome": "ignored", "detail": duplicate_detail, "run_id": first})
                    return DeliveryRecord(delivery_id, event, at, "ignored", duplicate_detail,
                                          first)
            run_id = self.store.add_run(session, pipeline, graph, trigger=trigger, actor=actor,
                                        repo_url=repo_url, ref=ref, commit_sha=commit_sha,
                                        parameters=parameters)
            session.connection().execute(_INSERT_DELIVERY, {
                "delivery_id": delivery_id, "event": event, "received_at": at,
                "outcome": "accepted", "detail": detail, "run_id": run_id})
            return DeliveryRecord(delivery_id, event, at, "accepted", detail, run_id)

        return self._once(delivery_id, work)

    def delivery(self, delivery_id: str) -> DeliveryRecord | None:
        """The delivery recorded under ``delivery_id``, if any."""
        with self.store.reading() as session:
            row = session.get(WebhookDelivery, delivery_id)
            return _delivery(row) if row is not None else None

    def _once(self, delivery_id: str, work: Callable[[Session], DeliveryRecord]
              ) -> tuple[DeliveryRecord, bool]:
        try:
            return self.store.writing(work), True
        except IntegrityError:
            existing = self.delivery(delivery_id)
            if existing is None:  # the violation was not the delivery id's: a real error
                raise
            return existing, False

    # -- audit --------------------------------------------------------------------------

    def audit(self, *, actor: str, action: str, subject_kind: str, subject_id: str,
              details: Mapping[str, Any] | None = None) -> None:
        """Append one entry to the audit trail."""
        at = self.store.clock()
        self.store.writing(lambda s: s.add(AuditEvent(
            at=at, actor=actor, action=action, subject_kind=subject_kind,
            subject_id=subject_id, details=dict(details or {}))))

    def audit_trail(self, *, subject_kind: str | None = None, subject_id: str | None = None,
                    limit: int = 100) -> list[AuditRecord]:
        """Audit entries, newest first."""
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if subject_kind:
            query = query.where(AuditEvent.subject_kind == subject_kind)
        if subject_id:
            query = query.where(AuditEvent.subject_id == subject_id)
        with self.store.reading() as session:
            return [AuditRecord(r.id, r.at, r.actor, r.action, r.subject_kind, r.subject_id,
                                dict(r.details)) for r in session.scalars(query)]


def _recent_run(session: Session, *, pipeline: str, trigger: str, repo_url: str | None,
                ref: str | None, commit_sha: str | None, since: datetime) -> str | None:
    """The earliest run since ``since`` for this key, looked up under the key's lock."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # Held to the end of the transaction. Two 32-bit keys: a space apart from the
        # single 64-bit key of the migration lock.
        digest = hashlib.sha256(f"{repo_url}\0{ref}\0{commit_sha}".encode()).digest()
        connection.execute(_REPLAY_LOCK, {"key": int.from_bytes(digest[:4], "big",
                                                                signed=True)})
    rows = connection.execute(_RECENT_RUN, {
        "commit_sha": commit_sha, "ref": ref, "since": since, "repo_url": repo_url,
        "trigger": trigger, "pipeline": pipeline})
    found = min(((created_at, run_id) for created_at, run_id in rows), default=None)
    return found[1] if found is not None else None


def _artifact(row: Artifact) -> ArtifactRecord:
    return ArtifactRecord(row.id, row.run_id, row.stage_ref, row.app, row.kind, row.name,
                          row.tag, row.digest, row.commit_sha, row.created_at)


def _intent(row: SwitchIntent) -> IntentRecord:
    return IntentRecord(row.id, row.run_id, row.app, row.environment, row.kind, row.version,
                        row.slot, row.digest, row.manifests, row.source_release_id,
                        row.actor, row.why, row.created_at, row.settled_at, row.outcome,
                        row.release_id)


def _release(row: Release) -> ReleaseRecord:
    return ReleaseRecord(row.id, row.app, row.version, row.environment, row.kind, row.digest,
                         row.manifests, row.run_id, row.source_release_id, row.actor, row.why,
                         row.created_at, row.slot)


def _delivery(row: WebhookDelivery) -> DeliveryRecord:
    return DeliveryRecord(row.delivery_id, row.event, row.received_at, row.outcome, row.detail,
                          row.run_id)
