"""The ``release`` pipeline: ``ci`` for a commit, then the delivery of every app it built
or reused (see :mod:`pipelines.delivery`): bake, staging, then red/black into production,
apps in the order of their dependencies (discovery before gateway), independent ones in
parallel; one failure rolls the whole release back together.

``ci`` runs as a child pipeline (a Prefect subflow with its own run in the store, linked
from the stage's outputs); the delivery's stages are this run's own, so one run shows the
release from commit to production.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow

from pipelines.ci import ci_flow
from pipelines.delivery import deliver
from pipelines.outcomes import CiOutcome, DeliveryOutcome
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.delivery_options import DeliveryOptions
from shipyard.domain.deployments import FIRST_STAGES
from shipyard.domain.pipeline import StageSpec
from stages.lifecycle import begin_run, child_stage, extend_run, reused_child, running
from stages.releases import plan_release
from stages.runtime import current_settings, open_store

__all__ = ["release_flow"]


@flow(name="release", flow_run_name="release {ref}")
async def release_flow(
    repo: str,
    ref: str = "main",
    apps: list[str] | None = None,
    environments: list[str] | None = None,
    options: DeliveryOptions = DeliveryOptions(),  # frozen: shared safely
    run_id: str | None = None,
    trigger: str = "manual",
    actor: str = "",
    restart_of: str | None = None,
    restart_from: str | None = None,
) -> DeliveryOutcome:
    """Build and test ``apps`` (default: all) at ``ref``, then deliver each through
    ``environments`` (default: every one of ``SHIPYARD_ENVIRONMENTS``, in order), as
    ``options`` say.
    ``restart_of`` and ``restart_from`` restart that run from that stage (see
    :mod:`stages.restart`)."""
    for app in apps or []:
        validate_app_name(app)
    route = environments or current_settings().environments
    run = await begin_run("release", FIRST_STAGES["release"], run_id=run_id, trigger=trigger,
                          actor=actor, repo_url=repo, ref=ref,
                          parameters={"apps": apps, "environments": route,
                                      "options": options.as_parameter()},
                          restart_of=restart_of, restart_from=restart_from)
    async with running(run):
        # Not again after a suspension (a judgment), nor before a restart's point.
        built = _built(await reused_child(run, "ci"))
        if built is None:
            async with child_stage(run, "ci") as outputs:
                built = await ci_flow(repo=repo, ref=ref, apps=apps, trigger="release",
                                      actor=actor)
                outputs.update(child_run_id=built.run_id, commit=built.commit,
                               images=built.model_dump(mode="json")["images"],
                               summary=f"ci run {built.run_id[:8]} at {built.commit[:12]}")
        await asyncio.to_thread(open_store().record_commit, run.run_id, built.commit)
        # Every app asked for that has an image now: rebuilt, or unchanged and reused.
        names = sorted(built.images)
        await extend_run(run, [StageSpec(f"plan:{app}", ("ci",), f"plan {app}")
                               for app in names])
        plans = list(await asyncio.gather(*(
            plan_release(run, app, built.run_id, route[0], built.images[app],
                         stage_ref=f"plan:{app}") for app in names)))
        if not options.why:
            options = options.model_copy(update={
                "why": f"release run {run.run_id[:8]} at {built.commit[:12]}"})
        delivered = await deliver(run, plans, route, options,
                                  planned_by={app: f"plan:{app}" for app in names})
    return DeliveryOutcome(run_id=run.run_id, commit=built.commit, delivered=delivered)


def _built(outputs: dict[str, Any] | None) -> CiOutcome | None:
    """What the ci stage produced, from its recorded outputs (``None`` when it recorded
    none, or recorded only the apps' names, as runs before typed images did)."""
    if outputs is None or not isinstance(outputs.get("images"), dict):
        return None
    return CiOutcome(run_id=outputs["child_run_id"], commit=outputs["commit"], tests={},
                     images=outputs["images"])
