"""The deploy stages: roll a bake into an environment in place (staging), or red/black
into production, then keep the previous version warm for a while and scale it down.

Red/black (Spinnaker's strategy, Argo Rollouts' blue-green): the new version runs beside
the current one as ``<app>-v007``; once every pod of it is available, the app's Services
are applied with a selector of that slot — the switch — under a probe load that measures
how long until at least 99% of answers come from the new version. A switch that does not
settle is switched back at once. The previous version stays scaled for
``SHIPYARD_WARM_SECONDS`` (a rollback in that window only re-applies its Services), then
scales down; the ``SHIPYARD_KEEP_VERSIONS`` newest earlier versions are kept, scaled down,
and older ones deleted.

Every deploy is recorded in the ledger with its exact manifests, so a rollback re-applies a
record, never a guess.
"""

from __future__ import annotations

import asyncio

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import KubeError
from shipyard.domain.bakes import split_for_switch
from shipyard.domain.manifests import parse_manifests
from shipyard.store import Ledger, ReleaseRecord
from stages.bake import BakedEnvironment, BakeResult
from stages.cluster import open_kube
from stages.locks import hold_locks, release_locks
from stages.rollouts import (
    RolloutFailed,
    apply_and_wait,
    prune_slots,
    remove_leftover_tracks,
    scale_down_others,
    serving_slot,
    switch_traffic,
)
from stages.runtime import RunContext, StageContext, StageFailure, StageResult, stage

__all__ = ["DeployResult", "ScaleDownResult", "deploy_red_black", "deploy_rolling",
           "open_kube", "scale_down_previous"]

SWITCH_TIMEOUT_SECONDS = 30.0


class DeployResult(StageResult):
    """What a deploy put where, and the release it recorded."""

    app: str
    environment: str
    namespace: str
    version: str
    slot: str = ""
    previous_slot: str = ""
    previous_release_id: int | None = None
    release_id: int
    switch_seconds: float | None = None
    probe_requests: int = 0
    failed_requests: int = 0

    def summary(self) -> str:
        where = f"{self.app}-{self.slot}" if self.slot else self.app
        switched = (f", traffic switched in {self.switch_seconds:.2f}s "
                    f"({self.failed_requests} of {self.probe_requests} probes failed)"
                    if self.switch_seconds is not None else "")
        return f"{where} {self.version} in {self.environment}{switched}"


class ScaleDownResult(StageResult):
    app: str
    environment: str
    serving: str
    scaled_down: list[str]
    pruned: list[str]
    removed_tracks: list[str] = []  # canary tracks a run that died mid-canary left

    def summary(self) -> str:
        return (f"{self.app} serving {self.serving or '-'}; scaled down "
                f"{', '.join(self.scaled_down) or 'nothing'}; pruned "
                f"{', '.join(self.pruned) or 'nothing'}"
                + (f"; removed {', '.join(self.removed_tracks)}" if self.removed_tracks
                   else ""))


@stage("deploy")
async def deploy_rolling(ctx: StageContext, bake: BakeResult, environment: str,
                         actor: str, why: str) -> DeployResult:
    """Apply ``bake``'s manifests for ``environment`` in place (a rolling update) and wait
    until kubectl's rules call it rolled out; record the release."""
    baked = _baked(bake, environment)
    kube = await open_kube(ctx, baked.namespace)
    ledger = Ledger(ctx.store)
    previous = await asyncio.to_thread(ledger.current_release, bake.app, environment)
    objects = parse_manifests(baked.manifests)
    workloads, services = split_for_switch(objects)
    await ctx.log(f"applying {len(objects)} objects to {baked.namespace} "
                  f"(field manager shipyard)")
    await _apply(ctx, kube, [*workloads, *services])
    release = await asyncio.to_thread(
        ledger.record_release, app=bake.app, version=bake.version, environment=environment,
        kind="deploy", digest=bake.image.digest, manifests=baked.manifests,
        actor=actor or "shipyard", why=why, run_id=ctx.run_id)
    return DeployResult(app=bake.app, environment=environment, namespace=baked.namespace,
                        version=bake.version, release_id=release.id,
                        previous_release_id=previous.id if previous else None)


@stage("deploy")
async def deploy_red_black(ctx: StageContext, bake: BakeResult, environment: str,
                           actor: str, why: str, kind: str = "deploy") -> DeployResult:
    """Run ``bake``'s versioned manifests beside the current version, switch the app's
    Services to them once healthy, measure the switch, and record the release. A new
    version that never becomes available never receives traffic."""
    baked = _baked(bake, environment)
    if not baked.slot:
        raise StageFailure("NotVersioned", f"the {environment} bake of {bake.app} has no "
                           "slot; red/black needs a versioned bake")
    kube = await open_kube(ctx, baked.namespace)
    ledger = Ledger(ctx.store)
    previous = await asyncio.to_thread(ledger.current_release, bake.app, environment)
    serving = await run_blocking(serving_slot, kube, baked.namespace, bake.app)
    workloads, services = split_for_switch(parse_manifests(baked.manifests))
    await ctx.log(f"{bake.app}-{baked.slot} beside {bake.app}-{serving or '(none)'} in "
                  f"{baked.namespace}")
    try:
        await _apply(ctx, kube, workloads)
    except RolloutFailed:
        # It never served; scaled to nothing it costs nothing and keeps its events.
        await run_blocking(kube.scale, baked.namespace, f"{bake.app}-{baked.slot}", 0)
        await ctx.log(f"{bake.app}-{baked.slot} scaled down: it never received traffic")
        raise
    # Written before traffic moves: if this process dies between the switch and the
    # record below, the drift reconciler records the release from it.
    intent = await asyncio.to_thread(
        ledger.record_intent, app=bake.app, environment=environment, kind=kind,
        version=bake.version, slot=baked.slot, digest=bake.image.digest,
        manifests=baked.manifests, actor=actor or "shipyard", why=why, run_id=ctx.run_id)
    switch = None
    if services:
        switch = await switch_traffic(kube, services, version=bake.version, log=ctx.log,
                                      timeout_seconds=SWITCH_TIMEOUT_SECONDS)
        if switch.seconds is None:
            await _switch_back(ctx, kube, bake.app, environment, baked, previous)
            raise StageFailure("SwitchNotVerified",
                               f"fewer than 99% of requests reached {bake.version} within "
                               f"{SWITCH_TIMEOUT_SECONDS:.0f}s; traffic switched back")
    release = await asyncio.to_thread(
        ledger.record_release, app=bake.app, version=bake.version, environment=environment,
        kind=kind, digest=bake.image.digest, manifests=baked.manifests, slot=baked.slot,
        actor=actor or "shipyard", why=why, run_id=ctx.run_id, intent_id=intent.id)
    return DeployResult(
        app=bake.app, environment=environment, namespace=baked.namespace,
        version=bake.version, slot=baked.slot, previous_slot=serving,
        previous_release_id=previous.id if previous else None, release_id=release.id,
        switch_seconds=switch.seconds if switch else None,
        probe_requests=switch.requests if switch else 0,
        failed_requests=switch.failed_requests if switch else 0)


@stage("scale-down")
async def scale_down_previous(ctx: StageContext, app: str, environment: str,
                              warm_seconds: float | None = None) -> ScaleDownResult:
    """Keep the previous versions warm for ``warm_seconds`` (default the settings'), then
    scale every version but the one serving then to zero, prune the oldest, and remove
    canary tracks a run that died mid-canary left behind."""
    warm = ctx.settings.warm_seconds if warm_seconds is None else warm_seconds
    namespace = ctx.settings.namespace_for(environment)
    if warm > 0:
        await ctx.log(f"keeping the previous version warm for {warm:.0f}s "
                      f"(rollback in this window switches back at once)")
        await ctx.flush()
        await asyncio.sleep(warm)
    kube = await open_kube(ctx, namespace)
    # Under the lock: a rollback in the warm window must not switch to a slot between
    # reading what serves and scaling the others down.
    held = [(app, environment)]
    await hold_locks(ctx, held)
    try:
        serving = await run_blocking(serving_slot, kube, namespace, app)
        scaled = await scale_down_others(kube, app, namespace, keep=serving, log=ctx.log)
        pruned = await prune_slots(kube, app, namespace, serving=serving,
                                   keep=ctx.settings.keep_versions, log=ctx.log)
        removed = await remove_leftover_tracks(kube, app, namespace, log=ctx.log)
    finally:
        await release_locks(RunContext(ctx.run_id), held)
    return ScaleDownResult(app=app, environment=environment, serving=serving,
                           scaled_down=scaled, pruned=pruned, removed_tracks=removed)


async def _apply(ctx: StageContext, kube: Kube, objects: list[dict[str, object]]) -> None:
    try:
        await apply_and_wait(kube, objects, ctx.log,
                             timeout_seconds=ctx.settings.rollout_timeout_seconds)
    except KubeError as err:
        raise StageFailure("ApplyFailed", str(err)) from err


async def _switch_back(ctx: StageContext, kube: Kube, app: str, environment: str,
                       baked: BakedEnvironment, previous: ReleaseRecord | None) -> None:
    if previous is not None and previous.manifests:
        _, services = split_for_switch(parse_manifests(previous.manifests))
        for service in services:
            await run_blocking(kube.apply, service)
        await ctx.log(f"switched {app} back to {previous.slot or previous.version}")
    await run_blocking(kube.scale, baked.namespace, f"{app}-{baked.slot}", 0)


def _baked(bake: BakeResult, environment: str) -> BakedEnvironment:
    if environment not in bake.bakes:
        raise StageFailure("NotBaked", f"{bake.app} was not baked for {environment} "
                           f"(baked: {', '.join(sorted(bake.bakes)) or 'nothing'})")
    return bake.bakes[environment]
