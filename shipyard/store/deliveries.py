"""Production deployments as DORA counts them, read from the release history.

Each release row of the environment is one change reaching it: ``deploy`` and
``promote`` rows are deployments, ``rollback`` rows are unplanned changes. A deployment
failed when the next row of that app and environment is a rollback (the rollback restored
service at its time). Its commit time comes from the ci run that built its image (the
artifact with the release's digest): the checkout stage's ``committed_at``, else the run's
creation (the push), a little after the commit.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.domain.dora import Deployment
from shipyard.store.models import Artifact, PipelineRun, Release, StageRun
from shipyard.store.store import Store

__all__ = ["production_deployments"]


def production_deployments(store: Store, environment: str, *,
                           since: datetime | None = None) -> list[Deployment]:
    """Every change that reached ``environment`` (since ``since``), oldest first."""
    query = select(Release).where(Release.environment == environment).order_by(Release.id)
    if since is not None:
        query = query.where(Release.created_at > since)
    with store.reading() as session:
        rows = list(session.scalars(query))
        commit_times = _commit_times(session, {r.digest for r in rows if r.kind != "rollback"})
    by_app: dict[str, list[Release]] = defaultdict(list)
    for row in rows:
        by_app[row.app].append(row)
    deployments: list[Deployment] = []
    for app_rows in by_app.values():
        for row, following in zip(app_rows, [*app_rows[1:], None], strict=True):
            rolled_back = (row.kind != "rollback" and following is not None
                           and following.kind == "rollback")
            deployments.append(Deployment(
                app=row.app, environment=row.environment, version=row.version,
                at=row.created_at, kind=row.kind,  # type: ignore[arg-type]
                commit_at=commit_times.get(row.digest) if row.kind != "rollback" else None,
                failed=rolled_back,
                restored_at=following.created_at if rolled_back and following else None,
                unplanned=row.kind == "rollback"))
    deployments.sort(key=lambda d: d.at)
    return deployments


def _commit_times(session: Session, digests: set[str]) -> dict[str, datetime]:
    """Per image digest, when the commit it was built from was made (or pushed)."""
    if not digests:
        return {}
    found: dict[str, datetime] = {}
    query = (select(Artifact.digest, PipelineRun.created_at, StageRun.outputs)
             .join(PipelineRun, PipelineRun.id == Artifact.run_id)
             .outerjoin(StageRun, (StageRun.run_id == PipelineRun.id)
                        & (StageRun.ref == "checkout"))
             .where(Artifact.digest.in_(digests)).order_by(Artifact.id))
    for digest, pushed_at, outputs in session.execute(query):
        if digest in found:
            continue
        committed = (outputs or {}).get("committed_at")
        found[digest] = datetime.fromisoformat(committed) if committed else pushed_at
    return found
