"""The ``rollback`` pipeline: make an environment run an earlier release of an app again —
at once when that version is still warm, else by re-applying its recorded manifests."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from pipelines.outcomes import RollbackOutcome
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.deployments import FIRST_STAGES
from stages.lifecycle import begin_run, running
from stages.rollback import rollback_release
from stages.runtime import current_settings

__all__ = ["rollback_flow"]


def _run_name() -> str:
    asked = flow_run.parameters
    return f"rollback {asked['app']} in {asked.get('environment') or 'production'}"


@flow(name="rollback", flow_run_name=_run_name)
async def rollback_flow(
    app: str,
    environment: str | None = None,
    to: str | None = None,
    run_id: str | None = None,
    trigger: str = "manual",
    actor: str = "",
    why: str = "",
    revert: bool = False,
    restart_of: str | None = None,
    restart_from: str | None = None,
) -> RollbackOutcome:
    """Roll ``app`` in ``environment`` (default: the production environment) back to
    ``to`` (a release id or a version) or the previous version.
    ``restart_of`` and ``restart_from`` restart that run from that stage (see
    :mod:`stages.restart`)."""
    validate_app_name(app)
    environment = environment or current_settings().production_environment
    run = await begin_run("rollback", FIRST_STAGES["rollback"], run_id=run_id,
                          trigger=trigger, actor=actor, app=app,
                          parameters={"environment": environment, "to": to, "why": why,
                                      "revert": revert},
                          restart_of=restart_of, restart_from=restart_from)
    async with running(run):
        release = await rollback_release(run, app, environment, to, actor, why, revert)
    return RollbackOutcome(run_id=run.run_id, release=release)
