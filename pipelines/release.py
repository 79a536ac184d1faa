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
from pipelines.delivery import DeliveryOptions, deliver
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.deployments import FIRST_STAGES
from shipyard.domain.pipeline import StageSpec
from stages.lifecycle import begin_run, child_stage, extend_run, reused_child, running
from stages.releases import plan_release
from stages.runtime import open_store

__all__ = ["release_flow"]


@flow(name="release", flow_run_name="release {ref}")
async def release_flow(
    repo: str,
    ref: str = "main",
    apps: list[str] | None = None,
    environments: list[str] | None = None,
    run_id: str | None = None,
    trigger: str = "manual",
    actor: str = "",
    warm_seconds: float | None = None,
    canary_window_seconds: float | None = None,
    judgment: bool = False,
    judgment_timeout_seconds: float | None = None,
    restart_of: str | None = None,
    restart_from: str | None = None,
) -> dict[str, Any]:
    """Build and test ``apps`` (default: all) at ``ref``, then deliver each through
    ``environments`` (default staging, then prod).
    ``restart_of`` and ``restart_from`` restart that run from that stage (see
    :mod:`stages.restart`)."""
    for app in apps or []:
        validate_app_name(app)
    options = DeliveryOptions(environments=environments or ["staging", "prod"],
                              warm_seconds=warm_seconds,
                              canary_window_seconds=canary_window_seconds,
                              judgment=judgment,
                              judgment_timeout_seconds=judgment_timeout_seconds, actor=actor)
    run = await begin_run("release", FIRST_STAGES["release"], run_id=run_id, trigger=trigger,
                          actor=actor, repo_url=repo, ref=ref,
                          parameters={"apps": apps, "environments": options.environments},
                          restart_of=restart_of, restart_from=restart_from)
    delivered: dict[str, Any] = {}
    async with running(run):
        # Not again after a suspension (a judgment), nor before a restart's point.
        built = _built(await reused_child(run, "ci"))
        if built is None:
            async with child_stage(run, "ci") as outputs:
                built = await ci_flow(repo=repo, ref=ref, apps=apps, trigger="release",
                                      actor=actor)
                outputs.update(child_run_id=built["run_id"], commit=built["commit"],
                               images=sorted(built["images"]),
                               summary=f"ci run {built['run_id'][:8]} at "
                                       f"{built['commit'][:12]}")
        await asyncio.to_thread(open_store().record_commit, run.run_id, built["commit"])
        # Every app asked for that has an image now: rebuilt, or unchanged and reused.
        names = sorted(built["images"])
        await extend_run(run, [StageSpec(f"plan:{app}", ("ci",), f"plan {app}")
                               for app in names])
        plans = list(await asyncio.gather(*(
            plan_release(run, app, built["run_id"], options.environments[0],
                         stage_ref=f"plan:{app}") for app in names)))
        options = options.model_copy(update={"why": f"release run {run.run_id[:8]} at "
                                                    f"{built['commit'][:12]}"})
        delivered = await deliver(run, plans, options,
                                  planned_by={app: f"plan:{app}" for app in names})
    return {"run_id": run.run_id, "commit": built["commit"], "delivered": delivered}


def _built(outputs: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the ci stage produced, from its recorded outputs."""
    if outputs is None or "images" not in outputs:
        return None
    return {"run_id": outputs["child_run_id"], "commit": outputs["commit"],
            "images": {app: None for app in outputs["images"]}}
