"""The delivery body the ``cd``, ``release`` and ``promote`` pipelines share (Spinnaker's
deploy pipeline): the deploy locks of every app and environment (all or none), then for
each app, in the dependency order of their descriptors,

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
import contextlib
import functools
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from graphlib import TopologicalSorter
from typing import Any

from shipyard.domain.delivery_options import DeliveryOptions
from shipyard.domain.pipeline import StageSpec
from shipyard.store import Ledger
from stages.bake import BakeResult, bake_manifests, red_black_environments
from stages.canary import CanaryOptions, analyze_canary
from stages.chaos_gate import chaos_gate
from stages.deploy import DeployResult, deploy_red_black, deploy_rolling, scale_down_previous
from stages.judgment import manual_judgment
from stages.lifecycle import extend_run, skip_stage
from stages.locks import release_locks, take_deploy_locks
from stages.releases import ReleasePlan
from stages.rollback import dependency_order, roll_back_delivery
from stages.runtime import RunContext, StageFailure, current_settings, open_store

__all__ = ["deliver", "delivery_stages", "reaches_production"]

LOCKS_STAGE = "locks"
ROLLBACK_STAGE = "rollback"
JUDGMENT_STAGE = "judgment"


@dataclass(frozen=True)
class Gates:
    """Which apps get which gate before production: a canary for those production already
    runs (it needs a baseline), chaos for those whose descriptor opts in (run in the
    environment before production), and whether one judgment holds them all."""

    canary: frozenset[str] = frozenset()
    chaos: frozenset[str] = frozenset()
    chaos_environment: str = ""
    judgment: bool = False


def reaches_production(environments: Sequence[str]) -> bool:
    """Whether a delivery through ``environments`` goes into a red/black one."""
    return any(env in red_black_environments() for env in environments)


def delivery_stages(plans: Sequence[ReleasePlan], environments: Sequence[str], *,
                    planned_by: Mapping[str, str],
                    gates: Gates = Gates()) -> tuple[StageSpec, ...]:
    """The stage graph of delivering ``plans`` through ``environments``: per app bake
    (after the stage that planned it, ``planned_by[app]``), each environment's deploy, then
    scale-down; deploys wait for the same environment's deploys of the apps they depend on
    (among those delivered). Before production come the ``gates``: per app canary then chaos, then
    one judgment for the whole delivery."""
    given = {p.app for p in plans}
    specs: list[StageSpec] = [StageSpec(LOCKS_STAGE, tuple(sorted(set(planned_by.values()))),
                                        "take the deploy locks")]
    ordered = sorted(plans, key=lambda p: p.app)
    last_gate: dict[str, str] = {}
    for plan in ordered:
        app = plan.app
        deps = [d for d in plan.depends_on if d in given]
        specs.append(StageSpec(f"bake:{app}", (LOCKS_STAGE,), f"bake {app}"))
        previous = f"bake:{app}"
        for env in environments:
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
        for env in environments:
            if env in red_black_environments():
                specs.append(StageSpec(f"scale-down:{app}",
                                       tuple(f"{env}:{p.app}" for p in ordered),
                                       f"scale down the previous {app}"))
    if gates.judgment and last_gate:
        specs.append(StageSpec(JUDGMENT_STAGE, tuple(sorted(set(last_gate.values()))),
                               "manual judgment before production"))
    specs.append(StageSpec(ROLLBACK_STAGE, (), "roll the release back on failure"))
    return tuple(specs)


async def deliver(run: RunContext, plans: Sequence[ReleasePlan], environments: Sequence[str],
                  options: DeliveryOptions, *, planned_by: Mapping[str, str],
                  kind: str = "deploy") -> dict[str, dict[str, DeployResult]]:
    """Deliver ``plans`` through ``environments`` as ``options`` say; on any failure roll
    every app this run changed back. Returns what each app became, per environment.

    Each step is a recorded stage: the locks, the bakes, per environment the gates and the
    deploys, the scale-downs, and (only after a failure) the coordinated rollback."""
    gates = await _gates(plans, environments, options)
    await extend_run(run, delivery_stages(plans, environments, planned_by=planned_by,
                                          gates=gates))
    pairs = [(p.app, env) for p in plans for env in environments]
    deployed: dict[str, dict[str, DeployResult]] = {p.app: {} for p in plans}
    try:
        await take_deploy_locks(run, pairs)
    except StageFailure as refused:  # nothing was touched: nothing to undo
        await skip_stage(run, ROLLBACK_STAGE, reason="WhenNotMet",
                         message="another run deploys these apps: nothing was changed")
        raise refused
    try:
        bakes = {plan.app: await bake_manifests(run, plan, list(environments),
                                                stage_ref=f"bake:{plan.app}")
                 for plan in plans}  # cheap, and every later step needs all of them
        for env in environments:
            if env in red_black_environments():
                await _gate(run, plans, bakes, gates, env, options)
            await in_dependency_order(plans, functools.partial(
                _deploy, run, bakes=bakes, environment=env, options=options, kind=kind,
                deployed=deployed))
        # The switches are done: a rollback may run during the warm window.
        await release_locks(run, pairs)
        await asyncio.gather(*(
            scale_down_previous(run, p.app, env, options.warm_seconds,
                                stage_ref=f"scale-down:{p.app}")
            for env in environments if env in red_black_environments()
            for p in plans))
    except Exception as failure:
        try:
            # A rollback that fails is recorded as the rollback stage's failure; the
            # delivery still fails with its first cause.
            with contextlib.suppress(Exception):
                await roll_back_delivery(run, list(plans), list(environments), run.actor,
                                         f"{type(failure).__name__}: {failure}")
        finally:
            await release_locks(run, pairs)
        raise
    await skip_stage(run, ROLLBACK_STAGE, reason="WhenNotMet",
                     message="nothing failed: nothing to roll back")
    return deployed


async def _gate(run: RunContext, plans: Sequence[ReleasePlan], bakes: Mapping[str, BakeResult],
                gates: Gates, environment: str, options: DeliveryOptions) -> None:
    """The gates before ``environment`` (production): per app in dependency order, one at
    a time since each loads the machine, the canary then chaos; then one judgment."""
    for plan in dependency_order(plans):
        if plan.app in gates.canary:
            await _canary(run, plan, bakes[plan.app], environment, options)
        if plan.app in gates.chaos:
            assert plan.descriptor is not None  # every plan stage reads it
            await chaos_gate(run, plan.descriptor, gates.chaos_environment,
                             options.chaos_window_seconds
                             or current_settings().chaos_window_seconds,
                             repo_url=plan.repo_url, commit_sha=plan.commit_sha,
                             stage_ref=f"chaos:{plan.app}")
    if gates.judgment:
        await manual_judgment(
            run, subject=", ".join(f"{p.app} {p.version}" for p in plans)
            + f" → {environment}", timeout_seconds=options.judgment_timeout_seconds
            or current_settings().judgment_timeout_seconds, stage_ref=JUDGMENT_STAGE)


async def _deploy(run: RunContext, plan: ReleasePlan, *, bakes: Mapping[str, BakeResult],
                  environment: str, options: DeliveryOptions, kind: str,
                  deployed: dict[str, dict[str, DeployResult]]) -> None:
    """One app into one environment: red/black where that is the strategy, else rolling."""
    ref = f"{environment}:{plan.app}"
    bake = bakes[plan.app]
    if environment in red_black_environments():
        deployed[plan.app][environment] = await deploy_red_black(
            run, bake, environment, run.actor, options.why, kind, stage_ref=ref)
    else:
        deployed[plan.app][environment] = await deploy_rolling(
            run, bake, environment, run.actor, options.why, stage_ref=ref)


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


async def _gates(plans: Sequence[ReleasePlan], environments: Sequence[str],
                 options: DeliveryOptions) -> Gates:
    """The gates before production: a canary for the apps production already runs (their
    baseline), chaos for those that opt in when an environment comes before production."""
    if not reaches_production(environments):
        return Gates()
    ledger = Ledger(await asyncio.to_thread(open_store))
    first_red_black = next(i for i, env in enumerate(environments)
                           if env in red_black_environments())
    production = environments[first_red_black]
    canary = set()
    if options.canary:
        for plan in plans:
            running = await asyncio.to_thread(ledger.current_release, plan.app, production)
            if running is not None and running.slot:
                canary.add(plan.app)
    before = environments[:first_red_black]
    chaos = frozenset(p.app for p in plans if options.chaos and before and p.descriptor
                      and p.descriptor.chaos.enabled)
    return Gates(canary=frozenset(canary), chaos=chaos,
                 chaos_environment=before[-1] if before else "",
                 judgment=options.judgment)


async def _canary(run: RunContext, plan: ReleasePlan, bake: BakeResult, environment: str,
                  options: DeliveryOptions) -> None:
    """The canary of one app against what ``environment`` (production) runs now."""
    production = await asyncio.to_thread(Ledger(await asyncio.to_thread(open_store))
                                         .current_release, plan.app, environment)
    assert production is not None  # _gates chose only apps production runs
    settings = current_settings()
    window = options.canary_window_seconds or settings.canary_window_seconds
    interval = min(settings.canary_interval_seconds, window / 5)
    canary_options = CanaryOptions(window_seconds=window, interval_seconds=interval,
                                   warmup_seconds=interval,
                                   rate_per_second=settings.canary_rate_per_second)
    assert plan.descriptor is not None  # every plan stage reads it
    await analyze_canary(run, bake, production, plan.descriptor, canary_options,
                         stage_ref=f"canary:{plan.app}")
