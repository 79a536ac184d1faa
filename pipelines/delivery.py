"""The delivery body the ``cd``, ``release`` and ``promote`` pipelines share (Spinnaker's
deploy pipeline): for each app, in the dependency order of their descriptors,

    bake → staging (rolling) → canary (Kayenta's judge) → chaos (steady state, kill, again)

then one manual judgment for the whole release, then for each app in dependency order

    prod (red/black, measured switch) → scale-down (after the warm window)

A failure anywhere stops the apps that depend on it and rolls the **whole release** back
together, dependents first: every environment this run changed gets its previous release
again (the warm version's Services, or the recorded manifests re-applied), and the deploy
stages that had succeeded become ``rolled_back``. Argo Rollouts leaves this "to your own
solution"; here it is one stage, ``rollback``, skipped when nothing failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from graphlib import TopologicalSorter
from typing import Any

from pydantic import BaseModel, Field

from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import Ledger
from stages.bake import BakeResult, bake_manifests, red_black_environments
from stages.cluster import open_kube
from stages.deploy import DeployResult, deploy_red_black, deploy_rolling, scale_down_previous
from stages.lifecycle import extend_run, skip_stage
from stages.releases import ReleasePlan
from stages.rollouts import restore_release
from stages.runtime import RunContext, StageContext, current_settings, open_store

__all__ = ["DeliveryOptions", "deliver", "delivery_stages"]

ROLLBACK_STAGE = "rollback"


class DeliveryOptions(BaseModel):
    """How far and how carefully a delivery goes (flow parameters, validated)."""

    environments: list[str] = Field(default_factory=lambda: ["staging", "prod"])
    warm_seconds: float | None = Field(default=None, ge=0)
    actor: str = ""
    why: str = ""


def delivery_stages(plans: Sequence[ReleasePlan], options: DeliveryOptions, *,
                    planned_by: Mapping[str, str]) -> tuple[StageSpec, ...]:
    """The stage graph of delivering ``plans``: per app bake (after the stage that
    planned it, ``planned_by[app]``), each environment's deploy, then scale-down; deploys
    wait for the same environment's deploys of the apps they depend on (among those
    delivered)."""
    given = {p.app for p in plans}
    specs: list[StageSpec] = []
    environments = options.environments
    for plan in sorted(plans, key=lambda p: p.app):
        app = plan.app
        deps = [d for d in plan.depends_on if d in given]
        specs.append(StageSpec(f"bake:{app}", (planned_by[app],), f"bake {app}"))
        previous = f"bake:{app}"
        for env in environments:
            ref = f"{env}:{app}"
            specs.append(StageSpec(ref, (previous, *(f"{env}:{d}" for d in deps)),
                                   f"deploy {app} to {env}"))
            previous = ref
        if "prod" in environments:
            specs.append(StageSpec(f"scale-down:{app}",
                                   tuple(f"prod:{p.app}" for p in sorted(plans,
                                                                         key=lambda p: p.app)),
                                   f"scale down the previous {app}"))
    specs.append(StageSpec(ROLLBACK_STAGE, (), "roll the release back on failure"))
    return tuple(specs)


async def deliver(run: RunContext, plans: Sequence[ReleasePlan], options: DeliveryOptions,
                  *, planned_by: Mapping[str, str], kind: str = "deploy") -> dict[str, Any]:
    """Deliver ``plans`` through ``options.environments``; on any failure roll every app
    this run changed back. Returns what each app became, per environment."""
    await extend_run(run, delivery_stages(plans, options, planned_by=planned_by))
    bakes: dict[str, BakeResult] = {}
    deployed: dict[str, dict[str, DeployResult]] = {p.app: {} for p in plans}
    failure: BaseException | None = None
    try:
        for plan in plans:  # cheap, and every later step needs all of them
            bakes[plan.app] = await bake_manifests(run, plan, options.environments,
                                                   stage_ref=f"bake:{plan.app}")
        for env in options.environments:
            async def one(plan: ReleasePlan, env: str = env) -> None:
                if env in red_black_environments():
                    deployed[plan.app][env] = await deploy_red_black(
                        run, bakes[plan.app], env, options.actor, options.why, kind,
                        stage_ref=f"{env}:{plan.app}")
                else:
                    deployed[plan.app][env] = await deploy_rolling(
                        run, bakes[plan.app], env, options.actor, options.why,
                        stage_ref=f"{env}:{plan.app}")

            await in_dependency_order(plans, one)
        if "prod" in options.environments:
            await asyncio.gather(*(scale_down_previous(
                run, p.app, "prod", options.warm_seconds, stage_ref=f"scale-down:{p.app}")
                for p in plans))
    except Exception as err:
        failure = err
    if failure is None:
        await skip_stage(run, ROLLBACK_STAGE, reason="WhenNotMet",
                         message="nothing failed: nothing to roll back")
        return {app: {env: d.model_dump(mode="json") for env, d in envs.items()}
                for app, envs in deployed.items()}
    await roll_back_release(run, plans, options, cause=failure)
    raise failure


async def in_dependency_order(plans: Sequence[ReleasePlan],
                              step: Callable[[ReleasePlan], Coroutine[Any, Any, None]]
                              ) -> None:
    """Run ``step`` for each plan once the steps of the plans it depends on succeeded,
    independent ones at once; after a failure start nothing new, let the running ones
    end, and raise the first failure."""
    by_app = {p.app: p for p in plans}
    sorter = TopologicalSorter({p.app: [d for d in p.depends_on if d in by_app]
                                for p in plans})
    sorter.prepare()
    pending: dict[asyncio.Task[None], str] = {}
    failure: BaseException | None = None
    while sorter.is_active():
        if failure is None:
            for app in sorter.get_ready():
                pending[asyncio.create_task(step(by_app[app]))] = app
        if not pending:
            break
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for finished in done:
            app = pending.pop(finished)
            if finished.exception() is None:
                sorter.done(app)
            elif failure is None:
                failure = finished.exception()
    if failure is not None:
        raise failure


async def roll_back_release(run: RunContext, plans: Sequence[ReleasePlan],
                            options: DeliveryOptions, *, cause: BaseException) -> None:
    """The ``rollback`` stage: give every environment this run changed its previous
    release back, dependents first, and mark the deploys undone."""
    store = await asyncio.to_thread(open_store)
    record = await asyncio.to_thread(store.get_run, run.run_id)
    failed = [s for s in record.stages if s.state is State.FAILED]
    why = "; ".join(f"{s.ref}: {s.reason}: {s.message}" for s in failed) or \
        f"{type(cause).__name__}: {cause}"
    await asyncio.to_thread(store.transition_stage, run.run_id, ROLLBACK_STAGE, State.RUNNING,
                            reason="Started", message=why[:500])
    ctx = StageContext(run.run_id, ROLLBACK_STAGE, 1, current_settings(), store)
    ledger = Ledger(store)
    undone: list[str] = []
    try:
        kube = await open_kube(ctx)
        order = _reverse_dependency_order(plans)
        for env in reversed(options.environments):
            for plan in order:
                stage = record.stage(f"{env}:{plan.app}") if _has(record, env, plan) else None
                if stage is None or stage.state not in (State.SUCCEEDED, State.FAILED):
                    continue
                target_id = stage.outputs.get("previous_release_id")
                if stage.state is State.FAILED:  # it never recorded: what was there before
                    current = await asyncio.to_thread(ledger.current_release, plan.app, env)
                    target = current
                else:
                    target = (await asyncio.to_thread(ledger.release, target_id)
                              if target_id else None)
                await ctx.log(f"{env}: rolling {plan.app} back to "
                              f"{target.version if target else 'nothing'}")
                mode = await restore_release(
                    kube, plan.app, ctx.settings.namespace_for(env), target, ctx.log,
                    timeout_seconds=ctx.settings.rollout_timeout_seconds)
                if target is not None and stage.state is State.SUCCEEDED:
                    await asyncio.to_thread(
                        ledger.record_release, app=plan.app, version=target.version,
                        environment=env, kind="rollback", digest=target.digest,
                        manifests=target.manifests, slot=target.slot,
                        actor=options.actor or "shipyard",
                        why=f"coordinated rollback of run {run.run_id[:8]}: {why}"[:2000],
                        run_id=run.run_id, source_release_id=target.id)
                if stage.state is State.SUCCEEDED:  # a failed one keeps its own reason
                    await asyncio.to_thread(
                        store.transition_stage, run.run_id, f"{env}:{plan.app}",
                        State.ROLLED_BACK, reason="RolledBack",
                        message=f"rolled back ({mode}) because {why}"[:2000])
                undone.append(f"{env}:{plan.app} ({mode})")
    except Exception as err:
        await ctx.log(f"rollback failed: {type(err).__name__}: {err}")
        await ctx.flush()
        await asyncio.to_thread(store.transition_stage, run.run_id, ROLLBACK_STAGE,
                                State.FAILED, reason="RollbackFailed",
                                message=f"{type(err).__name__}: {err}; undone so far: "
                                        f"{', '.join(undone) or 'nothing'}")
        return
    await ctx.flush()
    await asyncio.to_thread(store.transition_stage, run.run_id, ROLLBACK_STAGE,
                            State.SUCCEEDED, reason="RolledBack",
                            message=f"undid {', '.join(undone) or 'nothing (nothing deployed)'}",
                            outputs={"undone": undone, "cause": why[:2000]})


def _has(record: Any, env: str, plan: ReleasePlan) -> bool:
    return any(s.ref == f"{env}:{plan.app}" for s in record.stages)


def _reverse_dependency_order(plans: Sequence[ReleasePlan]) -> list[ReleasePlan]:
    by_app = {p.app: p for p in plans}
    order = TopologicalSorter({p.app: [d for d in p.depends_on if d in by_app]
                               for p in plans}).static_order()
    return [by_app[app] for app in reversed(list(order))]
