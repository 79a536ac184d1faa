"""The ``promote`` pipeline: the production part of a delivery for a version that passed
the environment before production (bake for the target, red/black, scale-down; rolled
back by itself on failure)."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from pipelines.delivery import deliver
from pipelines.outcomes import DeliveryOutcome
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.delivery_options import DeliveryOptions
from shipyard.domain.deployments import FIRST_STAGES
from stages.lifecycle import begin_run, running
from stages.releases import plan_promotion
from stages.runtime import current_settings

__all__ = ["promote_flow"]


def _run_name() -> str:
    asked = flow_run.parameters
    return (f"promote {asked['app']} {asked.get('from_env') or 'previous'} → "
            f"{asked.get('to_env') or 'production'}")


@flow(name="promote", flow_run_name=_run_name)
async def promote_flow(
    app: str,
    from_env: str | None = None,
    to_env: str | None = None,
    version: str | None = None,
    options: DeliveryOptions = DeliveryOptions(),  # frozen: shared safely
    run_id: str | None = None,
    trigger: str = "manual",
    actor: str = "",
    restart_of: str | None = None,
    restart_from: str | None = None,
) -> DeliveryOutcome:
    """Take ``app`` into ``to_env`` (default: the production environment) at the version
    ``from_env`` (default: the environment before it) runs, or at ``version`` if it ran
    there, as ``options`` say.
    ``restart_of`` and ``restart_from`` restart that run from that stage (see
    :mod:`stages.restart`)."""
    validate_app_name(app)
    settings = current_settings()
    to_env = to_env or settings.production_environment
    # With nothing before it, "from itself": the plan refuses that, recorded, with why.
    from_env = from_env or (to_env in settings.environments
                            and settings.environment_before(to_env)) or to_env
    if not options.why:
        options = options.model_copy(update={"why": f"promoted from {from_env}"})
    run = await begin_run("promote", FIRST_STAGES["promote"], run_id=run_id, trigger=trigger,
                          actor=actor, app=app,
                          parameters={"from_env": from_env, "to_env": to_env,
                                      "version": version, "options": options.as_parameter()},
                          restart_of=restart_of, restart_from=restart_from)
    async with running(run):
        plan = await plan_promotion(run, app, from_env, to_env, version)
        delivered = await deliver(run, [plan], [to_env], options, planned_by={app: "plan"},
                                  kind="promote")
    return DeliveryOutcome(run_id=run.run_id, commit=plan.commit_sha, delivered=delivered)

