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
from dataclasses import dataclass
from graphlib import TopologicalSorter
from typing import Any

from pydantic import BaseModel, Field

from shipyard.adapters.kube import Kube
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import DeployLocks, Ledger
from stages.bake import BakeResult, bake_manifests, red_black_environments
from stages.canary import CanaryOptions, analyze_canary
from stages.chaos_gate import chaos_gate
from stages.cluster import open_kube
from stages.deploy import DeployResult, deploy_red_black, deploy_rolling, scale_down_previous
from stages.judgment import manual_judgment
from stages.lifecycle import extend_run, skip_stage
from stages.releases import ReleasePlan
from stages.rollouts import restore_release
from stages.runtime import RunContext, StageContext, current_settings, open_store

__all__ = ["DeliveryOptions", "deliver", "delivery_stages"]

ROLLBACK_STAGE = "rollback"
JUDGMENT_STAGE = "judgment"


class DeliveryOptions(BaseModel):
    """How far and how carefully a delivery goes (flow parameters, validated)."""

    environments: list[str] = Field(default_factory=lambda: ["staging", "prod"])
    warm_seconds: float | None = Field(default=None, ge=0)
    canary: bool = True
    canary_window_seconds: float | None = Field(default=None, gt=0)
    chaos: bool = True
    chaos_window_seconds: float | None = Field(default=None, gt=0)
    judgment: bool = False
    judgment_timeout_seconds: float | None = Field(default=None, gt=0)
    actor: str = ""
    why: str = ""

    @property
    def to_production(self) -> bool:
        return any(env in red_black_environments() for env in self.environments)


@dataclass(frozen=True)
class Gates:
    """Which apps get which gate before production: a canary for those production already
    runs (it needs a baseline), chaos for those whose descriptor opts in (run in the
    environment before production), and whether one judgment holds them all."""

    canary: frozenset[str] = frozenset()
    chaos: frozenset[str] = frozenset()
    chaos_environment: str = ""
    judgment: bool = False


def delivery_stages(plans: Sequence[ReleasePlan], options: DeliveryOptions, *,
                    planned_by: Mapping[str, str],
                    gates: Gates = Gates()) -> tuple[StageSpec, ...]:
    """The stage graph of delivering ``plans``: per app bake (after the stage that
    planned it, ``planned_by[app]``), each environment's deploy, then scale-down; deploys
    wait for the same environment's deploys of the apps they depend on (among those
    delivered). Before production come the ``gates``: per app canary then chaos, then
    one judgment for the whole delivery."""
    given = {p.app for p in plans}
    specs: list[StageSpec] = []
    ordered = sorted(plans, key=lambda p: p.app)
    last_gate: dict[str, str] = {}
    for plan in ordered:
        app = plan.app
        deps = [d for d in plan.depends_on if d in given]
        specs.append(StageSpec(f"bake:{app}", (planned_by[app],), f"bake {app}"))
        previous = f"bake:{app}"
        for env in options.environments:
            if env in red_black_environments():
                if app in gates.canary:
                    specs.append(StageSpec(f"canary:{app}", (previous,),
                                           f"canary analysis of {app}"))
                    previous = f"canary:{app}"
                if app in gates.chaos:
                    specs.append(StageSpec(f"chaos:{app}", (previous,),
                                           f"chaos experiment on {app}"))
                    previous = f"chaos:{app}"
                last_gate[app] = previous
                if gates.judgment:
                    previous = JUDGMENT_STAGE
            ref = f"{env}:{app}"
            specs.append(StageSpec(ref, (previous, *(f"{env}:{d}" for d in deps)),
                                   f"deploy {app} to {env}"))
            previous = ref
        if "prod" in options.environments:
            specs.append(StageSpec(f"scale-down:{app}",
                                   tuple(f"prod:{p.app}" for p in ordered),
                                   f"scale down the previous {app}"))
    if gates.judgment and last_gate:
        specs.append(StageSpec(JUDGMENT_STAGE, tuple(sorted(set(last_gate.values()))),
                               "manual judgment before production"))
    specs.append(StageSpec(ROLLBACK_STAGE, (), "roll the release back on failure"))
    return tuple(specs)


async def deliver(run: RunContext, plans: Sequence[ReleasePlan], options: DeliveryOptions,
                  *, planned_by: Mapping[str, str], kind: str = "deploy") -> dict[str, Any]:
    """Deliver ``plans`` through ``options.environments``; on any failure roll every app
    this run changed back. Returns what each app became, per environment."""
    gates = await _gates(plans, options)
    await extend_run(run, delivery_stages(plans, options, planned_by=planned_by,
                                          gates=gates))
    bakes: dict[str, BakeResult] = {}
    deployed: dict[str, dict[str, DeployResult]] = {p.app: {} for p in plans}
    failure: BaseException | None = None
    locks = DeployLocks(await asyncio.to_thread(open_store))
    pairs = [(p.app, env) for p in plans for env in options.environments]
    try:
        await take_deploy_locks(run, locks, pairs, first_stage=f"bake:{plans[0].app}")
        for plan in plans:  # cheap, and every later step needs all of them
            bakes[plan.app] = await bake_manifests(run, plan, options.environments,
                                                   stage_ref=f"bake:{plan.app}")
        for env in options.environments:
            if env in red_black_environments():
                for plan in _dependency_order(plans):  # one at a time: each loads the machine
                    if plan.app in gates.canary:
                        await _canary(run, plan, bakes[plan.app], options)
                    if plan.app in gates.chaos:
                        assert plan.descriptor is not None
                        await chaos_gate(run, plan.descriptor, gates.chaos_environment,
                                         options.chaos_window_seconds
                                         or current_settings().chaos_window_seconds,
                                         stage_ref=f"chaos:{plan.app}")

                if gates.judgment:
                    await manual_judgment(
                        run, subject=", ".join(f"{p.app} {p.version}" for p in plans)
                        + f" → {env}", timeout_seconds=options.judgment_timeout_seconds
                        or current_settings().judgment_timeout_seconds,
                        stage_ref=JUDGMENT_STAGE)

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
        # The switches are done: a rollback may run during the warm window.
        await _release_locks(locks, pairs, run)
        if "prod" in options.environments:
            await asyncio.gather(*(scale_down_previous(
                run, p.app, "prod", options.warm_seconds, stage_ref=f"scale-down:{p.app}")
                for p in plans))
    except Exception as err:
        failure = err
    if isinstance(failure, DeployInProgress):  # nothing was touched: nothing to undo
        await skip_stage(run, ROLLBACK_STAGE, reason="WhenNotMet",
                         message="another run deploys these apps: nothing was changed")
        raise failure
    if failure is None:
        await skip_stage(run, ROLLBACK_STAGE, reason="WhenNotMet",
                         message="nothing failed: nothing to roll back")
        return {app: {env: d.model_dump(mode="json") for env, d in envs.items()}
                for app, envs in deployed.items()}
    try:
        await roll_back_release(run, plans, options, cause=failure)
    finally:
        await _release_locks(locks, pairs, run)
    raise failure


class DeployInProgress(Exception):
    """Another live run holds the deploy lock of an app in an environment."""


async def take_deploy_locks(run: RunContext, locks: DeployLocks,
                            pairs: Sequence[tuple[str, str]], *, first_stage: str) -> None:
    """Take every (app, environment) lock for ``run`` or none: on a refusal the locks
    taken are given back and ``first_stage`` fails with ``DeployInProgress``, naming the
    run that holds the lock."""
    taken: list[tuple[str, str]] = []
    for app, env in pairs:
        holder = await asyncio.to_thread(locks.acquire, app, env, run.run_id)
        if holder is None:
            taken.append((app, env))
            continue
        await _release_locks(locks, taken, run)
        store = await asyncio.to_thread(open_store)
        other = await asyncio.to_thread(store.get_run, holder)
        message = (f"{app} in {env} is being deployed by {other.pipeline} run "
                   f"{other.short_id} ({other.state.value}); one deploy per app and "
                   f"environment at a time: wait for it to end, or cancel it")
        await asyncio.to_thread(store.transition_stage, run.run_id, first_stage,
                                State.RUNNING, reason="Started")
        await asyncio.to_thread(store.transition_stage, run.run_id, first_stage,
                                State.FAILED, reason="DeployInProgress", message=message)
        raise DeployInProgress(message)


async def _release_locks(locks: DeployLocks, pairs: Sequence[tuple[str, str]],
                         run: RunContext) -> None:
    for app, env in pairs:
        await asyncio.to_thread(locks.release, app, env, run.run_id)


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
        order = _reverse_dependency_order(plans)
        for env in reversed(options.environments):
            namespace = ctx.settings.namespace_for(env)
            kube: Kube | None = None  # opened as the environment's identity when needed
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
                kube = kube or await open_kube(ctx, namespace)
                mode = await restore_release(
                    kube, plan.app, namespace, target, ctx.log,
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


def _dependency_order(plans: Sequence[ReleasePlan]) -> list[ReleasePlan]:
    by_app = {p.app: p for p in plans}
    order = TopologicalSorter({p.app: [d for d in p.depends_on if d in by_app]
                               for p in plans}).static_order()
    return [by_app[app] for app in order]


def _reverse_dependency_order(plans: Sequence[ReleasePlan]) -> list[ReleasePlan]:
    return list(reversed(_dependency_order(plans)))


async def _gates(plans: Sequence[ReleasePlan], options: DeliveryOptions) -> Gates:
    """The gates before production: a canary for the apps production already runs (their
    baseline), chaos for those that opt in when an environment comes before production."""
    if not options.to_production:
        return Gates()
    ledger = Ledger(await asyncio.to_thread(open_store))
    canary = set()
    if options.canary:
        for plan in plans:
            production = await asyncio.to_thread(ledger.current_release, plan.app, "prod")
            if production is not None and production.slot:
                canary.add(plan.app)
    before = options.environments[:next(i for i, env in enumerate(options.environments)
                                        if env in red_black_environments())]
    chaos = frozenset(p.app for p in plans if options.chaos and before and p.descriptor
                      and p.descriptor.chaos.enabled)
    return Gates(canary=frozenset(canary), chaos=chaos,
                 chaos_environment=before[-1] if before else "",
                 judgment=options.judgment)


async def _canary(run: RunContext, plan: ReleasePlan, bake: BakeResult,
                  options: DeliveryOptions) -> None:
    """The canary of one app against what production runs now."""
    ref = f"canary:{plan.app}"
    production = await asyncio.to_thread(Ledger(await asyncio.to_thread(open_store))
                                         .current_release, plan.app, "prod")
    assert production is not None  # _canaried chose only apps production runs
    settings = current_settings()
    window = options.canary_window_seconds or settings.canary_window_seconds
    interval = min(settings.canary_interval_seconds, window / 5)
    canary_options = CanaryOptions(window_seconds=window, interval_seconds=interval,
                                   warmup_seconds=interval,
                                   rate_per_second=settings.canary_rate_per_second)
    assert plan.descriptor is not None  # every plan stage reads it
    await analyze_canary(run, bake, production, plan.descriptor, canary_options,
                         stage_ref=ref)
