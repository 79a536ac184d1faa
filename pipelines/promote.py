"""The ``promote`` pipeline: the production part of a delivery for a version that passed
staging (bake for the target, red/black, scale-down; rolled back by itself on failure)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from pipelines.delivery import DeliveryOptions, deliver
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.deployments import FIRST_STAGES
from stages.lifecycle import begin_run, running
from stages.releases import plan_promotion

__all__ = ["promote_flow"]


@flow(name="promote", flow_run_name="promote {app} {from_env} → {to_env}")
async def promote_flow(
    app: str,
    from_env: str = "staging",
    to_env: str = "prod",
    version: str | None = None,
    run_id: str | None = None,
    trigger: str = "manual",
    actor: str = "",
    why: str = "",
    warm_seconds: float | None = None,
    canary_window_seconds: float | None = None,
    judgment: bool = False,
    judgment_timeout_seconds: float | None = None,
    restart_of: str | None = None,
    restart_from: str | None = None,
) -> dict[str, Any]:
    """Take ``app`` into ``to_env`` at the version ``from_env`` runs (or ``version``, if
    it ran there).
    ``restart_of`` and ``restart_from`` restart that run from that stage (see
    :mod:`stages.restart`)."""
    validate_app_name(app)
    run = await begin_run("promote", FIRST_STAGES["promote"], run_id=run_id, trigger=trigger,
                          actor=actor, app=app,
                          parameters={"from_env": from_env, "to_env": to_env,
                                      "version": version, "why": why},
                          restart_of=restart_of, restart_from=restart_from)
    async with running(run):
        plan = await plan_promotion(run, app, from_env, to_env, version)
        options = DeliveryOptions(environments=[to_env], warm_seconds=warm_seconds,
                                  canary_window_seconds=canary_window_seconds,
                                  judgment=judgment,
                                  judgment_timeout_seconds=judgment_timeout_seconds,
                                  actor=actor,
                                  why=why or f"promoted from {from_env}")
        delivered = await deliver(run, [plan], options, planned_by={app: "plan"},
                                  kind="promote")
    return {"run_id": run.run_id, "version": plan.version, "environment": to_env,
            "delivered": delivered}
