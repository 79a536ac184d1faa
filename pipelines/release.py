"""The ``release`` pipeline: ``ci`` for a commit, then ``cd`` for each app in the order of
their dependencies (discovery before gateway), independent apps in parallel.

Its own stages are ``ci`` and ``cd:<app>``; each runs a child pipeline (a Prefect subflow
with its own run in the store, linked from the stage's outputs). A failed deploy skips the
deploys of the apps that depend on it.
"""

from __future__ import annotations

import asyncio
from graphlib import TopologicalSorter
from typing import Any

from prefect import flow

from pipelines.cd import cd_flow
from pipelines.ci import ci_flow
from shipyard.domain.catalog import deploy_stages, validate_app_name
from shipyard.domain.deployments import FIRST_STAGES
from shipyard.domain.pipeline import StageSpec
from stages.catalog import descriptors_at
from stages.lifecycle import begin_run, child_stage, extend_run, running
from stages.runtime import RunContext, open_store

__all__ = ["release_flow"]


@flow(name="release", flow_run_name="release {ref} → {environment}")
async def release_flow(
    repo: str,
    ref: str = "main",
    apps: list[str] | None = None,
    environment: str = "staging",
    run_id: str | None = None,
    trigger: str = "manual",
    actor: str = "",
) -> dict[str, Any]:
    """Build and test ``apps`` (default: all) at ``ref``, then release each into
    ``environment``."""
    for app in apps or []:
        validate_app_name(app)
    run = await begin_run("release", FIRST_STAGES["release"], run_id=run_id, trigger=trigger,
                          actor=actor, repo_url=repo, ref=ref,
                          parameters={"apps": apps, "environment": environment})
    released: dict[str, Any] = {}
    async with running(run):
        async with child_stage(run, "ci") as outputs:
            built = await ci_flow(repo=repo, ref=ref, apps=apps, trigger="release",
                                  actor=actor)
            outputs.update(child_run_id=built["run_id"], commit=built["commit"],
                           summary=f"ci run {built['run_id'][:8]} at {built['commit'][:12]}")
        await asyncio.to_thread(open_store().record_commit, run.run_id, built["commit"])
        # Every app asked for that has an image now: rebuilt, or unchanged and reused.
        descriptors = await descriptors_at(repo, built["commit"], sorted(built["images"]))
        stages = deploy_stages(descriptors, after="ci")
        await extend_run(run, stages)
        released = await _deploy_in_order(run, stages, built["run_id"], environment, actor)
    return {"run_id": run.run_id, "commit": built["commit"], "released": released}


async def _deploy_in_order(run: RunContext, stages: tuple[StageSpec, ...], ci_run_id: str,
                           environment: str, actor: str) -> dict[str, Any]:
    """Start each app's deploy once the deploys it requires succeeded; stop starting new
    ones after a failure (the store skips the dependents)."""
    sorter = TopologicalSorter({s.ref: [r for r in s.requires if r != "ci"] for s in stages})
    sorter.prepare()
    released: dict[str, Any] = {}
    pending: dict[asyncio.Task[dict[str, Any]], str] = {}
    failed = False
    while sorter.is_active():
        if not failed:
            for ref in sorter.get_ready():
                pending[asyncio.create_task(
                    _deploy(run, ref, ci_run_id, environment, actor))] = ref
        if not pending:
            break
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for finished in done:
            ref = pending.pop(finished)
            if finished.exception() is None:
                released[ref.removeprefix("cd:")] = finished.result()
                sorter.done(ref)
            else:
                failed = True
    return released  # after a failure, running() settles the run as failed


async def _deploy(run: RunContext, ref: str, ci_run_id: str, environment: str,
                  actor: str) -> dict[str, Any]:
    app = ref.removeprefix("cd:")
    async with child_stage(run, ref) as outputs:
        result = await cd_flow(app=app, ci_run_id=ci_run_id, environment=environment,
                               trigger="release", actor=actor, why=f"release run {run.run_id[:8]}")
        outputs.update(child_run_id=result["run_id"], release_id=result["release_id"],
                       summary=f"{app} {result['version']} in {environment}")
    return result
