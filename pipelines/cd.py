"""The ``cd`` pipeline (Spinnaker's role) for one app built by a ci run: plan, then the
delivery stages (see :mod:`pipelines.delivery`): bake, staging, then red/black into
production, rolled back by itself if anything fails."""

from __future__ import annotations

from typing import Any

from prefect import flow

from pipelines.delivery import DeliveryOptions, deliver
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.deployments import FIRST_STAGES
from stages.lifecycle import begin_run, running
from stages.releases import plan_release

__all__ = ["cd_flow"]


@flow(name="cd", flow_run_name="cd {app}")
async def cd_flow(
    app: str,
    ci_run_id: str,
    environments: list[str] | None = None,
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
    """Deliver ``app`` as built and tested by ``ci_run_id`` through ``environments``
    (default staging, then prod).
    ``restart_of`` and ``restart_from`` restart that run from that stage (see
    :mod:`stages.restart`)."""
    validate_app_name(app)
    options = DeliveryOptions(environments=environments or ["staging", "prod"],
                              warm_seconds=warm_seconds,
                              canary_window_seconds=canary_window_seconds,
                              judgment=judgment,
                              judgment_timeout_seconds=judgment_timeout_seconds, actor=actor,
                              why=why or f"ci run {ci_run_id[:8]}")
    run = await begin_run("cd", FIRST_STAGES["cd"], run_id=run_id, trigger=trigger, actor=actor,
                          app=app, parameters={"ci_run_id": ci_run_id,
                                               "environments": options.environments},
                          restart_of=restart_of, restart_from=restart_from)
    async with running(run):
        plan = await plan_release(run, app, ci_run_id, options.environments[0])
        delivered = await deliver(run, [plan], options, planned_by={app: "plan"})
    return {"run_id": run.run_id, "version": plan.version, "delivered": delivered}
