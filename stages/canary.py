"""The canary stage (Kayenta's automated canary analysis, with the pods provisioned too).

Baseline and canary run side by side in the production namespace with equal replicas:
the baseline is the production release's own recorded bake, relabelled for its track
(fresh pods of exactly what production runs, so age and warm caches do not bias the
comparison); the canary is the new version's production bake, relabelled the same way.
Each track gets a Service of its own and the same load (the app's ``canary.load_paths``),
and each track's pods are scraped through the API server's pod proxy every interval.
The scrapes become one series per canary metric (:mod:`shipyard.domain.metric_series`),
and NetflixACAJudge (:mod:`shipyard.domain.canary_judge`) scores them. Both tracks are
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
from shipyard.adapters.pod_metrics import start_recording
from shipyard.domain.bakes import derive_track
from shipyard.domain.canary_config import canary_config_for
from shipyard.domain.canary_judge import Verdict, judge_canary
from shipyard.domain.canary_plan import points_in_window
from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.labels import (
    APP_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TRACK_LABEL,
    label_selector,
)
from shipyard.domain.manifests import parse_manifests
from shipyard.domain.metric_series import series_for_all
from shipyard.domain.traffic import summarize
from shipyard.store import ReleaseRecord
from stages.bake import BakedEnvironment, BakeResult
from stages.cluster import open_kube
from stages.rollouts import apply_and_wait, service_url
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["CanaryOptions", "CanaryResult", "analyze_canary"]

TRACKS = ("baseline", "canary")


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
    rounds, samples = result
    return await _judge(ctx, bake, production, descriptor, options, rounds, samples)


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
                 rounds: dict[str, list[Any]], samples: dict[str, list[Any]]) -> CanaryResult:
    """Judge the measured ``rounds`` (Kayenta's judge); ``CanaryFailed`` with the report as
    outputs unless the canary passes."""
    app = bake.app
    config = canary_config_for(descriptor, pass_threshold=options.pass_threshold,
                               marginal_threshold=options.marginal_threshold)
    baseline_series = series_for_all(descriptor, rounds["baseline"])
    canary_series = series_for_all(descriptor, rounds["canary"])
    judgement = await asyncio.to_thread(judge_canary, config, baseline_series, canary_series)
    load = {track: _load_summary(samples[track]) for track in TRACKS}
    for name, metric in judgement.metrics.items():
        await ctx.log(f"  {name}: {metric.classification}"
                      + (" (critical)" if metric.critical_failure else ""))
    outcome = CanaryResult(
        app=app, baseline_version=production.version, canary_version=bake.version,
        score=judgement.score, verdict=judgement.verdict,
        pass_threshold=config.pass_threshold, marginal_threshold=config.marginal_threshold,
        points=max((len(v) for v in canary_series.values()), default=0),
        report=judgement.to_json(include_series=True), load=load)
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


async def _measure(ctx: StageContext, kube: Kube, app: str, namespace: str,
                   descriptor: AppDescriptor, options: CanaryOptions
                   ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    # Without paths of its own, the root: an operational path would not count at all.
    paths = descriptor.load_paths or ("/",)
    if not descriptor.load_paths:
        await ctx.log(f"{app}'s app.yaml names no canary.load_paths: loading '/' (add "
                      "paths that exercise the app)")
    total = options.warmup_seconds + options.window_seconds
    urls = {t: await run_blocking(service_url, kube, namespace, f"{app}-{t}")
            for t in TRACKS}
    loads = {t: start_load(LoadSpec(
        base_url=urls[t], paths=tuple(paths), rate_per_second=options.rate_per_second,
        duration_seconds=total + options.interval_seconds,
        max_requests=math.ceil(options.rate_per_second * (total + options.interval_seconds))
        + 10, timeout_seconds=5.0, keep_alive=False)) for t in TRACKS}
    if options.warmup_seconds:
        await asyncio.sleep(options.warmup_seconds)
    recorders = {t: start_recording(
        kube, namespace, label_selector({APP_LABEL: app, TRACK_LABEL: t}),
        port=descriptor.port, interval_seconds=options.interval_seconds,
        duration_seconds=options.window_seconds) for t in TRACKS}
    rounds = {t: list(await recorders[t].wait()) for t in TRACKS}
    samples = {t: await loads[t].stop() for t in TRACKS}
    for track in TRACKS:
        errors = sum(len(r.errors) for r in rounds[track])
        await ctx.log(f"{track}: {len(rounds[track])} scrape rounds ({errors} pod errors), "
                      f"{len(samples[track])} requests")
    return rounds, samples


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
