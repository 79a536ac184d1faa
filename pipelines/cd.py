"""The ``cd`` pipeline (Spinnaker's role) for one app: plan the release from a CI run,
then record it as what the environment should run.

Stage graph today: ``plan`` → ``record``. Bake, deploy, canary, chaos, judgment and
red/black join between the two with the CD pipeline issue.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from shipyard.domain.catalog import validate_app_name
from shipyard.domain.deployments import FIRST_STAGES
from stages.lifecycle import begin_run, running
from stages.releases import plan_release, record_release

__all__ = ["cd_flow"]


@flow(name="cd", flow_run_name="cd {app} → {environment}")
async def cd_flow(
    app: str,
    ci_run_id: str,
    environment: str = "staging",
    run_id: str | None = None,
    trigger: str = "manual",
    actor: str = "",
    why: str = "",
) -> dict[str, Any]:
    """Release ``app`` as built and tested by ``ci_run_id`` into ``environment``."""
    validate_app_name(app)
    run = await begin_run("cd", FIRST_STAGES["cd"], run_id=run_id, trigger=trigger, actor=actor,
                          app=app, parameters={"ci_run_id": ci_run_id,
                                               "environment": environment})
    async with running(run):
        plan = await plan_release(run, app, ci_run_id, environment)
        release = await record_release(run, plan, actor, why)
    return {"run_id": run.run_id, "release_id": release.release_id,
            "version": release.version, "environment": environment}
