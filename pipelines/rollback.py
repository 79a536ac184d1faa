"""The ``rollback`` pipeline: make an environment run an earlier release of an app again —
at once when that version is still warm, else by re-applying its recorded manifests."""

from __future__ import annotations

from typing import Any

from prefect import flow

from shipyard.domain.catalog import validate_app_name
from shipyard.domain.deployments import FIRST_STAGES
from stages.lifecycle import begin_run, running
from stages.rollback import rollback_release

__all__ = ["rollback_flow"]


@flow(name="rollback", flow_run_name="rollback {app} in {environment}")
async def rollback_flow(
    app: str,
    environment: str = "prod",
    to: str | None = None,
    run_id: str | None = None,
    trigger: str = "manual",
    actor: str = "",
    why: str = "",
    revert: bool = False,
    restart_of: str | None = None,
    restart_from: str | None = None,
) -> dict[str, Any]:
    """Roll ``app`` in ``environment`` back to ``to`` (a release id or a version) or the
    previous version.
    ``restart_of`` and ``restart_from`` restart that run from that stage (see
    :mod:`stages.restart`)."""
    validate_app_name(app)
    run = await begin_run("rollback", FIRST_STAGES["rollback"], run_id=run_id,
                          trigger=trigger, actor=actor, app=app,
                          parameters={"environment": environment, "to": to, "why": why,
                                      "revert": revert},
                          restart_of=restart_of, restart_from=restart_from)
    async with running(run):
        release = await rollback_release(run, app, environment, to, actor, why, revert)
    return {"run_id": run.run_id, "release_id": release.release_id,
            "version": release.version, "environment": environment, "mode": release.mode,
            "revert_branch": release.revert_branch}
