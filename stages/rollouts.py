"""The cluster work the deploy, rollback and canary stages share: apply a bake and wait
like ``kubectl rollout status``, find what serves now, switch traffic and measure the
switch, restore a recorded release, scale down and prune old versions.

Plain async functions over a :class:`~shipyard.adapters.kube.Kube` and a log callback, so
stages and pipelines (the coordinated rollback) call the same code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import KubeError
from shipyard.adapters.load import LoadSpec, start_load
from shipyard.domain.bakes import slot_number, split_for_switch
from shipyard.domain.clock import Monotonic
from shipyard.domain.labels import (
    APP_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SLOT_LABEL,
    TRACK_LABEL,
    label_selector,
)
from shipyard.domain.manifests import TRACKS, parse_manifests
from shipyard.domain.pod_health import worst_problem
from shipyard.domain.rollout import scaled_and_rolled_out
from shipyard.domain.traffic import summarize, switch_time
from shipyard.store import ReleaseRecord
from stages.runtime import StageFailure

__all__ = ["Log", "RolloutFailed", "Switch", "app_selector", "apply_and_wait", "prune_slots",
           "remove_app", "restore_release", "scale_down_others", "service_url",
           "serving_slot", "switch_traffic"]

Log = Callable[[str], Coroutine[Any, Any, None]]

SWITCH_PROBE_RATE = 50.0
"""Probe requests per second while a switch is measured: 20 answers (the window that must
all land on the new version) take 0.4 s, so the measure adds little to the switch."""


class RolloutFailed(StageFailure):
    """A Deployment did not become available; the message names the worst pod problem."""

    def __init__(self, message: str) -> None:
        super().__init__("RolloutFailed", message)


@dataclass(frozen=True, slots=True)
class Switch:
    """A measured traffic switch: how long until ≥ 99% of answers came from ``version``
    (None if it never settled), and what the probe load saw meanwhile."""

    version: str
    seconds: float | None
    requests: int
    failed_requests: int


def app_selector(app: str) -> str:
    """Every object Shipyard made for ``app``."""
    return label_selector({APP_LABEL: app, MANAGED_BY_LABEL: MANAGED_BY})


async def apply_and_wait(kube: Kube, objects: Sequence[Mapping[str, Any]], log: Log, *,
                         timeout_seconds: float) -> None:
    """Apply ``objects`` (server-side, in order) and wait for every Deployment among them
    to roll out; raise :class:`RolloutFailed` naming the worst pod problem."""
    for obj in objects:
        await run_blocking(kube.apply, obj)
    loop = asyncio.get_running_loop()
    lines: list[str] = []

    def report(line: str) -> None:
        lines.append(line)
        asyncio.run_coroutine_threadsafe(log(line), loop)

    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        status, problems = await run_blocking(
            kube.follow_rollout, namespace, name, timeout_seconds=timeout_seconds,
            on_change=report)
        if not status.done:
            worst = worst_problem(problems)
            raise RolloutFailed(f"{status.message}" + (f"; {worst}" if worst and
                                                       str(worst) not in status.message
                                                       else ""))


def serving_slot(kube: Kube, namespace: str, app: str) -> str:
    """The slot the app's Service sends traffic to now ("" if none, or not red/black)."""
    service = kube.get({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": app, "namespace": namespace}})
    if service is None:
        return ""
    return str((service.get("spec", {}).get("selector") or {}).get(SLOT_LABEL, ""))


def service_url(kube: Kube, namespace: str, name: str) -> str:
    """``http://<ClusterIP>:<port>`` of a Service (the host reaches ClusterIPs through
    kube-proxy)."""
    spec = kube.service(namespace, name).get("spec", {})
    port = (spec.get("ports") or [{}])[0].get("port", 80)
    return f"http://{spec['clusterIP']}:{port}"


async def switch_traffic(kube: Kube, services: Sequence[Mapping[str, Any]], *,
                         version: str, log: Log, timeout_seconds: float = 30.0,
                         now: Monotonic = time.monotonic) -> Switch:
    """Apply ``services`` (the switch) under a probe load on the app's Service and measure
    how long until ≥ 99% of answers come from ``version``, within ``timeout_seconds`` on
    ``now`` (the monotonic clock the probe load times its answers on)."""
    main = services[0]
    namespace, name = main["metadata"]["namespace"], main["metadata"]["name"]
    existed = await run_blocking(kube.get, main) is not None
    if not existed:  # a first release: nothing to switch from, the Service is new
        for service in services:
            await run_blocking(kube.apply, service)
    url = await run_blocking(service_url, kube, namespace, name)
    # A new connection per probe: kube-proxy routes connections, and a kept-alive one
    # would stay on an old pod after the switch, as no new client would.
    spec = LoadSpec(base_url=url, paths=("/version",), rate_per_second=SWITCH_PROBE_RATE,
                    duration_seconds=timeout_seconds + 5, timeout_seconds=2.0,
                    max_requests=int(SWITCH_PROBE_RATE * (timeout_seconds + 5)),
                    keep_alive=False)
    async with start_load(spec) as load:
        await asyncio.sleep(0.3)  # a few answers from before the switch, for the record
        switched_at = load.since_start(now())
        for service in services:
            await run_blocking(kube.apply, service)
        await log(f"switched Service {namespace}/{name} to {version}; probing {url}")
        deadline = now() + timeout_seconds
        settled: float | None = None
        while now() < deadline:
            await asyncio.sleep(0.2)
            settled = switch_time(load.samples, version, after=switched_at)
            if settled is not None:
                break
        await asyncio.sleep(0.2)
    summary = summarize(load.samples, start=switched_at)
    switch = Switch(version, settled, summary.requests, summary.failures)
    await log(f"traffic on {version}: " + (f"{settled:.2f}s after the switch"
                                           if settled is not None else
                                           f"not settled within {timeout_seconds:.0f}s")
              + f"; {summary.failures} of {summary.requests} probe requests failed")
    return switch


async def restore_release(kube: Kube, app: str, namespace: str,
                          target: ReleaseRecord | None, log: Log, *,
                          timeout_seconds: float) -> str:
    """Make ``namespace`` run ``target`` (a recorded release) of ``app`` again, or nothing
    of the app when ``target`` is None. Returns how: ``warm`` (its version was still
    scaled: only the Services were re-applied), ``reapplied`` (its manifests were applied
    again and waited for) or ``removed``. Raises :class:`StageFailure`
    (``SwitchNotVerified``) when the probes never saw the target serve."""
    if target is None:
        await remove_app(kube, app, namespace, log)
        return "removed"
    objects = parse_manifests(target.manifests) if target.manifests else []
    if not objects:
        raise StageFailure("NothingRecorded", f"release #{target.id} of {app} has no "
                           "recorded manifests to re-apply")
    workloads, services = split_for_switch(objects)
    mode = "reapplied"
    warm = bool(target.slot) and await run_blocking(_warm, kube, namespace,
                                                    f"{app}-{target.slot}")
    if warm:
        mode = "warm"
        await log(f"{app}-{target.slot} is still scaled: switching traffic back at once")
    else:
        await log(f"re-applying release #{target.id} ({target.version}"
                  f"{', ' + target.slot if target.slot else ''})")
        await apply_and_wait(kube, workloads, log, timeout_seconds=timeout_seconds)
    if services:
        switch = await switch_traffic(kube, services, version=target.version, log=log)
        if switch.seconds is None:  # as a deploy's switch: unverified is not done
            raise StageFailure("SwitchNotVerified",
                               f"fewer than 99% of requests reached {target.version} after "
                               f"the switch back; {app} in {namespace} may still serve "
                               "another version")
    if target.slot:
        await scale_down_others(kube, app, namespace, keep=target.slot, log=log)
    return mode


def _warm(kube: Kube, namespace: str, name: str) -> bool:
    """Whether Deployment ``name`` could take the traffic back at once."""
    try:
        deployment = kube.deployment(namespace, name)
    except KubeError:
        return False
    return scaled_and_rolled_out(deployment)


async def scale_down_others(kube: Kube, app: str, namespace: str, *, keep: str,
                            log: Log) -> list[str]:
    """Scale every versioned Deployment of ``app`` but slot ``keep`` to zero."""
    scaled = []
    for deployment in await run_blocking(kube.list_objects, "apps/v1", "Deployment",
                                         namespace, app_selector(app)):
        slot = deployment["metadata"].get("labels", {}).get(SLOT_LABEL, "")
        if slot and slot != keep and deployment["spec"].get("replicas", 0) > 0:
            await run_blocking(kube.scale, namespace, deployment["metadata"]["name"], 0)
            scaled.append(deployment["metadata"]["name"])
    if scaled:
        await log(f"scaled down {', '.join(scaled)}")
    return scaled


async def prune_slots(kube: Kube, app: str, namespace: str, *, serving: str, keep: int,
                      log: Log) -> list[str]:
    """Delete the versioned workloads of ``app`` beyond the ``keep`` newest besides the
    serving one (their records stay in the ledger: a rollback re-applies them)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for kind, api in (("Deployment", "apps/v1"), ("ConfigMap", "v1")):
        for obj in await run_blocking(kube.list_objects, api, kind, namespace,
                                      app_selector(app)):
            slot = obj["metadata"].get("labels", {}).get(SLOT_LABEL, "")
            if slot and slot != serving:
                found.setdefault(slot, []).append(obj)
    old = sorted(found, key=slot_number, reverse=True)[keep:]
    for slot in old:
        for obj in found[slot]:
            await run_blocking(kube.delete, obj)
    if old:
        await log(f"pruned {', '.join(f'{app}-{s}' for s in old)} (kept the {keep} newest "
                  "earlier versions)")
    return old


async def remove_leftover_tracks(kube: Kube, app: str, namespace: str, *,
                                 log: Log) -> list[str]:
    """Delete the canary analysis' baseline and canary tracks of ``app`` (Deployments,
    Services, ConfigMaps) that outlived their stage: a canary stage removes its own
    whatever the verdict, so only a run that died mid-canary leaves any. Call it holding
    the app's deploy lock, when no canary of it can be running."""
    # Only the analysis' tracks: the stable one (production itself) carries the label too.
    analysis = ",".join(track for track in TRACKS if track != "stable")
    selector = f"{app_selector(app)},{TRACK_LABEL} in ({analysis})"
    removed = []
    for kind, api in (("Deployment", "apps/v1"), ("Service", "v1"), ("ConfigMap", "v1")):
        for obj in await run_blocking(kube.list_objects, api, kind, namespace, selector):
            await run_blocking(kube.delete, obj)
            removed.append(f"{kind}/{obj['metadata']['name']}")
    if removed:
        await log(f"removed {', '.join(removed)}: canary tracks a run that died left behind")
    return removed


async def remove_app(kube: Kube, app: str, namespace: str, log: Log) -> None:
    """Delete everything Shipyard made for ``app`` in ``namespace``."""
    removed = []
    for kind, api in (("Service", "v1"), ("Deployment", "apps/v1"), ("ConfigMap", "v1")):
        for obj in await run_blocking(kube.list_objects, api, kind, namespace,
                                      app_selector(app)):
            await run_blocking(kube.delete, obj)
            removed.append(f"{kind}/{obj['metadata']['name']}")
    await log(f"removed {', '.join(removed) or 'nothing'} of {app} from {namespace}")
