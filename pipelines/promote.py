"""The ``promote`` pipeline: make one environment run what another runs now."""

from __future__ import annotations

from typing import Any

from prefect import flow

from shipyard.domain.catalog import validate_app_name
from shipyard.domain.deployments import FIRST_STAGES
from stages.lifecycle import begin_run, running
from stages.releases import promote_release

__all__ = ["promote_flow"]


@flow(name="promote", flow_run_name="promote {app} {from_env} → {to_env}")
async def promote_flow(
    app: str,
    from_env: str = "staging",
    to_env: str = "prod",
    run_id: str | None = None,
    trigger: str = "manual",
    actor: str = "",
    why: str = "",
) -> dict[str, Any]:
    """Promote ``app``'s current release in ``from_env`` to ``to_env``."""
    validate_app_name(app)
    run = await begin_run("promote", FIRST_STAGES["promote"], run_id=run_id, trigger=trigger,
                          actor=actor, app=app,
                          parameters={"from_env": from_env, "to_env": to_env, "why": why})
    async with running(run):
        release = await promote_release(run, app, from_env, to_env, actor, why)
    return {"run_id": run.run_id, "release_id": release.release_id,
            "version": release.version, "environment": to_env}
