"""The canary stage (Kayenta's automated canary analysis, with the pods provisioned too).

Baseline and canary run side by side in the production namespace with equal replicas:
the baseline is the production release's own recorded bake, relabelled for its track
(fresh pods of exactly what production runs, so age and warm caches do not bias the
comparison); the canary is the new version's production bake, relabelled the same way.
Each track gets a Service of its own and the same load (the app's ``canary.load_paths``),
and a metrics provider (:mod:`stages.canary_metrics`: Prometheus's range queries, or each
track's pods scraped through the API server's pod proxy) measures one series per canary
metric, and NetflixACAJudge (:mod:`shipyard.domain.canary_judge`) scores them. Both tracks are
removed afterwards, whatever the verdict; the report (each metric's classification, its
statistics and both series) is kept in the stage's outputs, failed or not.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from pydantic import BaseModel, ConfigDict

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.kube import Kube
from shipyard.adapters.load import LoadSpec, start_load
from shipyard.domain.bakes import derive_track
from shipyard.domain.canary_config import canary_config_for
from shipyard.domain.canary_judge import Verdict, judge_canary
from shipyard.domain.canary_plan import points_in_window
from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.labels import APP_LABEL, MANAGED_BY, MANAGED_BY_LABEL, TRACK_LABEL
from shipyard.domain.manifests import parse_manifests
from shipyard.domain.traffic import summarize
from shipyard.store import ReleaseRecord
from stages.bake import BakedEnvironment, BakeResult
from stages.canary_metrics import (
    TRACKS,
    Measurement,
    PrometheusProvider,
    Window,
    choose_providers,
)
from stages.cluster import open_kube
from stages.rollouts import apply_and_wait, service_url
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["CanaryOptions", "CanaryResult", "analyze_canary"]

class CanaryOptions(BaseModel):
    """How long and how hard to analyse (seconds in tests, minutes or hours for real): the
    canary stage's input, not a result."""

    model_config = ConfigDict(frozen=True)

    window_seconds: float = 60.0
    interval_seconds: float = 5.0
    warmup_seconds: float = 5.0
    replicas: int = 1
    rate_per_second: float = 20.0
    pass_threshold: float = 95.0
    marginal_threshold: float = 75.0


class CanaryResult(StageResult):
    app: str
    baseline_version: str
    canary_version: str
    score: float
    verdict: Verdict
    pass_threshold: float
    marginal_threshold: float
    points: int
    report: dict[str, Any]
    load: dict[str, Any]

    def summary(self) -> str:
        return (f"{self.app} {self.canary_version} vs {self.baseline_version}: score "
                f"{self.score:g} ({self.verdict}; pass {self.pass_threshold:g}, marginal "
                f"{self.marginal_threshold:g}) over {self.points} points")


# A verdict is never reused: a restart judges again.
@stage("canary", reusable=False)
async def analyze_canary(ctx: StageContext, bake: BakeResult, production: ReleaseRecord,
                         descriptor: AppDescriptor, options: CanaryOptions,
                         environment: str | None = None) -> CanaryResult:
    """Compare ``bake``'s version for ``environment`` (default: the production environment
    of the settings) with ``production`` (the release running there) under equal load, and
    judge it; fail with ``CanaryFailed`` unless it passes."""
    baked = _baked_against(bake, production,
                           environment or ctx.settings.production_environment)
    namespace = baked.namespace
    app = bake.app
    kube = await open_kube(ctx, namespace)
    tracks = {
        "baseline": derive_track(parse_manifests(production.manifests), app=app,
                                 track="baseline", replicas=options.replicas),
        "canary": derive_track(parse_manifests(baked.manifests), app=app, track="canary",
                               replicas=options.replicas),
    }
    services = {track: _track_service(app, namespace, track, descriptor.port)
                for track in TRACKS}
    expected = points_in_window(options.window_seconds, options.interval_seconds)
    await ctx.log(f"baseline {production.version} and canary {bake.version}, "
                  f"{options.replicas} pod(s) each, {options.window_seconds:g}s at "
                  f"{options.rate_per_second:g} req/s per track, a point every "
                  f"{options.interval_seconds:g}s (~{expected} points)")
    try:
        await asyncio.gather(*(apply_and_wait(kube, [*tracks[t], services[t]], ctx.log,
                                              timeout_seconds=ctx.settings
                                              .rollout_timeout_seconds) for t in TRACKS))
        result = await _measure(ctx, kube, app, namespace, descriptor, options)
    finally:
        await _remove_tracks(kube, [*tracks["baseline"], *tracks["canary"],
                                    *services.values()])
        await ctx.log("baseline and canary removed")
    measured, samples = result
    return await _judge(ctx, bake, production, descriptor, options, measured, samples)


def _baked_against(bake: BakeResult, production: ReleaseRecord,
                   environment: str) -> BakedEnvironment:
    """The bake for ``environment``, once ``production`` is the release running there
    (the baseline) and its manifests are on record."""
    if production.environment != environment:
        raise StageFailure("InvalidInput", f"the canary in {environment} needs the release "
                           f"running there as its baseline, not {production.environment}'s")
    baked = bake.bakes.get(environment)
    if baked is None or not production.manifests:
        raise StageFailure("NotBaked", f"the canary needs the bake for {environment} and "
                           "the recorded manifests of the release running there")
    return baked


async def _judge(ctx: StageContext, bake: BakeResult, production: ReleaseRecord,
                 descriptor: AppDescriptor, options: CanaryOptions,
                 measured: list[Measurement], samples: dict[str, list[Any]]) -> CanaryResult:
    """Judge the first measurement (Kayenta's judge), and any cross-check the same way;
    ``CanaryFailed`` with the report as outputs unless the first one passes."""
    app = bake.app
    config = canary_config_for(descriptor, pass_threshold=options.pass_threshold,
                               marginal_threshold=options.marginal_threshold)
    deciding, *checks = measured
    judgement = await asyncio.to_thread(judge_canary, config, deciding.series["baseline"],
                                        deciding.series["canary"])
    load = {track: _load_summary(samples[track]) for track in TRACKS}
    for name, metric in judgement.metrics.items():
        await ctx.log(f"  {name}: {metric.classification}"
                      + (" (critical)" if metric.critical_failure else ""))
    report = {**judgement.to_json(include_series=True), **_provenance(deciding)}
    if checks:
        report["cross_checks"] = []
        for check in checks:
            other = await asyncio.to_thread(judge_canary, config, check.series["baseline"],
                                            check.series["canary"])
            await ctx.log(f"cross-check through {check.provider}: score {other.score:g} "
                          f"({other.verdict}), against {judgement.score:g} "
                          f"({judgement.verdict}) through {deciding.provider}")
            report["cross_checks"].append({
                **_provenance(check), "score": other.score, "verdict": other.verdict,
                "metrics": {n: m.classification for n, m in other.metrics.items()}})
    outcome = CanaryResult(
        app=app, baseline_version=production.version, canary_version=bake.version,
        score=judgement.score, verdict=judgement.verdict,
        pass_threshold=config.pass_threshold, marginal_threshold=config.marginal_threshold,
        points=max((len(v) for v in deciding.series["canary"].values()), default=0),
        report=report, load=load)
    if judgement.verdict != "pass":
        failing = [f"{n} {m.classification}" for n, m in judgement.metrics.items()
                   if m.classification != "Pass"]
        raise StageFailure("CanaryFailed",
                           f"score {judgement.score:g} is {judgement.verdict} (pass "
                           f"{config.pass_threshold:g}): {', '.join(failing) or 'no metric'}"
                           + (f"; {'; '.join(judgement.reasons)}" if judgement.reasons
                              else ""),
                           outputs=outcome.model_dump(mode="json"))
    return outcome


def _provenance(measurement: Measurement) -> dict[str, Any]:
    """Where a measurement came from, for the report: the provider, the window, the
    graph links (Prometheus), what it cost and its notes."""
    return {"provider": measurement.provider, "window": measurement.window,
            "links": measurement.links, "cost": measurement.cost,
            "notes": measurement.notes}


async def _measure(ctx: StageContext, kube: Kube, app: str, namespace: str,
                   descriptor: AppDescriptor, options: CanaryOptions
                   ) -> tuple[list[Measurement], dict[str, list[Any]]]:
    """Load both tracks, and measure them through every chosen provider over the same
    window (after the warm-up); returns the measurements (the deciding one first) and the
    load's samples per track."""
    # Without paths of its own, the root: an operational path would not count at all.
    paths = descriptor.load_paths or ("/",)
    if not descriptor.load_paths:
        await ctx.log(f"{app}'s app.yaml names no canary.load_paths: loading '/' (add "
                      "paths that exercise the app)")
    providers = await choose_providers(ctx.settings, kube)
    await ctx.log("metrics from " + providers[0].name
                  + (f", cross-checked through {providers[1].name}" if len(providers) > 1
                     else ""))
    # Long enough for a provider that needs more than the warm-up to get ready (stopped
    # as soon as the window is measured).
    total = (max(options.warmup_seconds, PrometheusProvider.ready_within_seconds + 5)
             + options.window_seconds)
    urls = {t: await run_blocking(service_url, kube, namespace, f"{app}-{t}")
            for t in TRACKS}
    loads = {t: start_load(LoadSpec(
        base_url=urls[t], paths=tuple(paths), rate_per_second=options.rate_per_second,
        duration_seconds=total + options.interval_seconds,
        max_requests=math.ceil(options.rate_per_second * (total + options.interval_seconds))
        + 10, timeout_seconds=5.0, keep_alive=False)) for t in TRACKS}
    # The warm-up, and until every provider can measure both tracks from the first point.
    await asyncio.gather(asyncio.sleep(options.warmup_seconds),
                         *(p.prepare(descriptor, namespace, options.replicas)
                           for p in providers))
    window = Window(options.window_seconds, options.interval_seconds)
    measured = list(await asyncio.gather(
        *(p.measure(descriptor, namespace, window) for p in providers)))
    samples = {t: await loads[t].stop() for t in TRACKS}
    for measurement in measured:
        for note in measurement.notes:
            await ctx.log(f"{measurement.provider}: {note}")
        await ctx.log(f"{measurement.provider} cost: "
                      + ", ".join(f"{k} {v}" for k, v in measurement.cost.items()))
    for track in TRACKS:
        await ctx.log(f"{track}: {len(samples[track])} requests")
    return measured, samples


def _track_service(app: str, namespace: str, track: str, port: int) -> dict[str, Any]:
    selector = {APP_LABEL: app, TRACK_LABEL: track}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"{app}-{track}", "namespace": namespace,
                         "labels": {**selector, MANAGED_BY_LABEL: MANAGED_BY}},
            "spec": {"selector": selector,
                     "ports": [{"name": "http", "port": 80, "targetPort": port}]}}


async def _remove_tracks(kube: Kube, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        await run_blocking(kube.delete, obj)


def _load_summary(samples: list[Any]) -> dict[str, Any]:
    summary = summarize(samples)
    return {"requests": summary.requests, "failures": summary.failures,
            "failure_ratio": summary.failure_ratio, "p50": summary.p50, "p99": summary.p99}
