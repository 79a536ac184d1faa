"""The ``cd`` pipeline (Spinnaker's role) for one app built by a ci run: plan, then the
delivery stages (see :mod:`pipelines.delivery`): bake, staging, then red/black into
production, rolled back by itself if anything fails."""

from __future__ import annotations

from prefect import flow

from pipelines.delivery import deliver
from pipelines.outcomes import DeliveryOutcome
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.delivery_options import DeliveryOptions
from shipyard.domain.deployments import FIRST_STAGES
from stages.lifecycle import begin_run, running
from stages.releases import plan_release
from stages.runtime import current_settings

__all__ = ["cd_flow"]


@flow(name="cd", flow_run_name="cd {app}")
async def cd_flow(
    app: str,
    ci_run_id: str,
    environments: list[str] | None = None,
    options: DeliveryOptions = DeliveryOptions(),  # frozen: shared safely
    run_id: str | None = None,
    trigger: str = "manual",
    actor: str = "",
    restart_of: str | None = None,
    restart_from: str | None = None,
) -> DeliveryOutcome:
    """Deliver ``app`` as built and tested by ``ci_run_id`` through ``environments``
    (default: every one of ``SHIPYARD_ENVIRONMENTS``, in order), as ``options`` say.
    ``restart_of`` and ``restart_from`` restart that run from that stage (see
    :mod:`stages.restart`)."""
    validate_app_name(app)
    route = environments or current_settings().environments
    if not options.why:
        options = options.model_copy(update={"why": f"ci run {ci_run_id[:8]}"})
    run = await begin_run("cd", FIRST_STAGES["cd"], run_id=run_id, trigger=trigger, actor=actor,
                          app=app, parameters={"ci_run_id": ci_run_id, "environments": route,
                                               "options": options.as_parameter()},
                          restart_of=restart_of, restart_from=restart_from)
    async with running(run):
        plan = await plan_release(run, app, ci_run_id, route[0])
        delivered = await deliver(run, [plan], route, options, planned_by={app: "plan"})
    return DeliveryOutcome(run_id=run.run_id, commit=plan.commit_sha, delivered=delivered)
