"""The chaos gate: a Chaos Toolkit-style experiment on the new version's pods, run inside
the CD pipeline before promotion.

Load goes to the app's Service (its ClusterIP, which kube-proxy makes reachable from this
host) for the whole experiment. The steady-state hypothesis built from the app's SLO
(``shipyard.domain.chaos.experiment_for``) is judged over a first window; if it does not
hold, the stage fails with ``SteadyStateNotMet`` and nothing is killed. Otherwise pods the
selector picks are killed (deleted with no grace period), and after a short settle the
hypothesis is judged over a second window; if it no longer holds, the stage fails with
``ChaosDeviated`` naming the probe, its value and its tolerance.

Every experiment's report is the stage's outputs (:class:`ChaosResult`'s fields), passed
or failed (the :class:`ChaosDeviated` / :class:`SteadyStateNotMet` raised carries them as
its outputs, and the report for the flow), goes to the audit trail (the gate deleted pods,
and says so) and into the stage's log as JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.kube_client import KubeError
from shipyard.adapters.load import LoadRun, LoadSpec, start_load
from shipyard.adapters.pod_killer import PodKiller
from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.chaos import (
    ChaosReport,
    Experiment,
    HypothesisResult,
    Kill,
    KillAction,
    Transition,
    Verdict,
    Window,
    choose_victims,
    evaluate_hypothesis,
    experiment_for,
)
from shipyard.domain.clock import Monotonic
from shipyard.domain.traffic import summarize
from shipyard.store import Ledger
from stages.cluster import open_kube
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["CHAOS_TIMEOUT_SECONDS", "ChaosDeviated", "ChaosResult", "SteadyStateNotMet",
           "run_chaos_verification", "verify_chaos"]

MAX_WINDOW_SECONDS = 300.0
MAX_SETTLE_SECONDS = 60.0
MAX_RATE_PER_SECOND = 200.0
CHAOS_TIMEOUT_SECONDS = 2 * MAX_WINDOW_SECONDS + MAX_SETTLE_SECONDS + 120
"""The longest experiment the inputs allow, plus time for the API calls and stragglers."""

Log = Callable[[str], Awaitable[None]]


class ChaosResult(StageResult):
    """An experiment's verdict, the seed that chose the victims and the report
    (``ChaosReport.to_json()``)."""

    app: str
    verdict: Verdict
    seed: int
    report: dict[str, Any]

    def summary(self) -> str:
        return str(self.report["summary"])


class SteadyStateNotMet(StageFailure):
    """The hypothesis did not hold before the method: the experiment was aborted."""

    def __init__(self, result: ChaosResult, report: ChaosReport) -> None:
        super().__init__("SteadyStateNotMet", report.summary(),
                         outputs=result.model_dump(mode="json"))
        self.report = report


class ChaosDeviated(StageFailure):
    """The hypothesis held before the method and not after it."""

    def __init__(self, result: ChaosResult, report: ChaosReport) -> None:
        super().__init__("ChaosDeviated", report.summary(),
                         outputs=result.model_dump(mode="json"))
        self.report = report


async def run_chaos_verification(
    ctx: StageContext,
    app: AppDescriptor,
    *,
    namespace: str,
    selector: str,
    target_url: str,
    paths: tuple[str, ...] = ("/version",),
    window_seconds: float = 10.0,
    # A pod deleted without grace still has its address in kube-proxy's rules until the
    # EndpointSlice change reaches it; on a busy node that took more than 2 s (one request
    # to the dead address failed a judged window). That is the cluster converging, not
    # the app's resilience: the settle waits it out, and its failures are still reported.
    settle_seconds: float = 5.0,
    rate_per_second: float = 20.0,
    kill_count: int | None = None,
    kill_share: float | None = None,
    seed: int | None = None,
    now: Monotonic = time.monotonic,
) -> ChaosResult:
    """Run the default experiment for ``app``: load ``target_url`` (``paths`` in turn, at
    ``rate_per_second``), judge the steady state over ``window_seconds``, kill
    ``kill_count`` pods (default 1) or a ``kill_share`` of the running pods ``selector``
    picks in ``namespace``, wait ``settle_seconds``, judge it over ``window_seconds``
    again. ``seed`` makes the choice of victims repeatable (one is drawn and logged when
    not given). ``now`` is the monotonic clock the load times its requests on, which
    places the windows and the kills.

    Raises :class:`SteadyStateNotMet` or :class:`ChaosDeviated` with the report, and
    ``StageFailure`` with ``InvalidChaosInput``, ``NoChaosTargets``, ``KubernetesError``,
    ``ClusterUnavailable`` or ``NoDeployIdentity`` when the experiment cannot be run.
    """
    experiment, spec = _plan(app, selector, target_url, paths, window_seconds,
                             settle_seconds, rate_per_second, kill_count, kill_share)
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)  # noqa: S311 -- a repeatable draw of victims, not a secret
    killer = PodKiller(await open_kube(ctx, namespace))
    candidates = await _live_pods(killer, namespace, selector)
    if not candidates:
        raise StageFailure("NoChaosTargets",
                           f"no running pod in {namespace} matches {selector!r}")
    await ctx.log(f"experiment: {experiment.title} (seed {seed})")
    await ctx.log(f"targets: {len(candidates)} running pod(s) in {namespace} match "
                  f"{selector!r}: {', '.join(candidates)}")
    await ctx.log(f"load: {spec.rate_per_second:g} requests/s to {spec.base_url} "
                  f"({', '.join(spec.paths)}), timeout {spec.timeout_seconds:g}s; windows "
                  f"of {experiment.window_seconds:g}s, settle {experiment.settle_seconds:g}s")
    report = await _experiment(experiment, spec, killer, namespace, selector, candidates, rng,
                               ctx.log, now)
    await ctx.log(f"verdict: {report.summary()}")
    await ctx.log("report: " + json.dumps(report.to_json(), ensure_ascii=False))
    await asyncio.to_thread(Ledger(ctx.store).audit, actor="shipyard",
                            action="chaos-experiment", subject_kind="run",
                            subject_id=ctx.run_id,
                            details={"stage": ctx.ref, "app": app.name, "namespace": namespace,
                                     "seed": seed, **report.to_json()})
    result = ChaosResult(app=app.name, verdict=report.verdict, seed=seed,
                         report=report.to_json())
    if report.verdict == "aborted":
        raise SteadyStateNotMet(result, report)
    if report.verdict == "deviated":
        raise ChaosDeviated(result, report)
    return result


verify_chaos = stage("chaos", timeout_seconds=CHAOS_TIMEOUT_SECONDS)(run_chaos_verification)


def _plan(app: AppDescriptor, selector: str, target_url: str, paths: tuple[str, ...],
          window_seconds: float, settle_seconds: float, rate_per_second: float,
          kill_count: int | None, kill_share: float | None) -> tuple[Experiment, LoadSpec]:
    """The experiment and the load it needs, or ``InvalidChaosInput`` saying what is
    wrong."""
    try:
        if not 0 < window_seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(f"window_seconds must be in (0, {MAX_WINDOW_SECONDS:g}]")
        if not 0 <= settle_seconds <= MAX_SETTLE_SECONDS:
            raise ValueError(f"settle_seconds must be in [0, {MAX_SETTLE_SECONDS:g}]")
        if not 0 < rate_per_second <= MAX_RATE_PER_SECOND:
            raise ValueError(f"rate_per_second must be in (0, {MAX_RATE_PER_SECOND:g}]")
        if kill_count is None and kill_share is None:
            kill_count = 1
        kill = KillAction(share=kill_share, count=kill_count, target=selector)
        experiment = experiment_for(app, target=selector, rate_per_second=rate_per_second,
                                    window_seconds=window_seconds,
                                    settle_seconds=settle_seconds, kill=kill)
        # A request twice as slow as the SLO's p99 counts as failed rather than waited
        # for: that bounds how long a window's stragglers can hold the judgment up.
        timeout = min(max(1.0, 2 * app.slo.latency_p99_seconds), 10.0)
        # Long enough for both windows, the settle, the kills and the stragglers; the
        # run is stopped as soon as the second window closes.
        duration = 2 * window_seconds + settle_seconds + 2 * timeout + 60
        spec = LoadSpec(base_url=target_url, paths=tuple(paths),
                        rate_per_second=rate_per_second, duration_seconds=duration,
                        max_requests=math.ceil(rate_per_second * duration),
                        timeout_seconds=timeout)
    except ValueError as err:
        raise StageFailure("InvalidChaosInput", str(err)) from err
    return experiment, spec


async def _experiment(experiment: Experiment, spec: LoadSpec, killer: PodKiller,
                      namespace: str, selector: str, candidates: list[str],
                      rng: random.Random, log: Log, now: Monotonic) -> ChaosReport:
    """Chaos Toolkit's flow over live traffic: hypothesis, method, hypothesis."""
    window = experiment.window_seconds
    run = start_load(spec)
    try:
        before_window = Window(0.0, window)
        await _until(run, before_window.end + spec.timeout_seconds, now)
        before = _judge(experiment, run, before_window)
        await log(f"steady state before, {_span(before_window)}: {_describe(before)}")
        if not before.met:
            return ChaosReport(experiment.title, selector, tuple(candidates), before_window,
                               before)
        kills = await _method(experiment, killer, namespace, selector, run, rng, log, now)
        if not kills:
            raise StageFailure("NoChaosTargets", f"every pod {selector!r} picked in "
                               f"{namespace} was gone before it could be killed")
        start = kills[-1].at_seconds + experiment.settle_seconds
        after_window = Window(start, start + window)
        await _until(run, after_window.end, now)
    finally:
        await run.stop()  # the requests in flight end within their timeout
    settling = summarize(run.samples, start=kills[0].at_seconds, end=after_window.start)
    transition = Transition(Window(kills[0].at_seconds, after_window.start),
                            settling.requests, settling.failures)
    await log(f"while the Service settled, {_span(transition.window)}: "
              f"{transition.failures} of {transition.requests} requests failed (not judged)")
    after = _judge(experiment, run, after_window)
    await log(f"steady state after, {_span(after_window)}: {_describe(after)}")
    return ChaosReport(experiment.title, selector, tuple(candidates), before_window, before,
                       tuple(kills), after_window, after, transition)


async def _method(experiment: Experiment, killer: PodKiller, namespace: str, selector: str,
                  run: LoadRun, rng: random.Random, log: Log, now: Monotonic) -> list[Kill]:
    kills: list[Kill] = []
    for action in experiment.method:
        killed = {k.pod for k in kills}
        alive = [p for p in await _live_pods(killer, namespace, selector) if p not in killed]
        for pod in choose_victims(alive, action, rng):
            try:
                gone = await run_blocking(killer.kill, namespace, pod)
            except KubeError as err:
                raise StageFailure("KubernetesError", str(err)) from err
            at = run.since_start(now())
            if not gone:
                await log(f"pod {pod} was already gone at {at:.2f}s")
                continue
            kills.append(Kill(pod, at))
            await log(f"killed pod {pod} at {at:.2f}s (grace period 0)")
    return kills


def _judge(experiment: Experiment, run: LoadRun, window: Window) -> HypothesisResult:
    return evaluate_hypothesis(experiment.hypothesis,
                               summarize(run.samples, start=window.start, end=window.end))


async def _until(run: LoadRun, seconds: float, now: Monotonic) -> None:
    """Sleep until ``seconds`` after the load started, by ``now``."""
    await asyncio.sleep(max(0.0, seconds - run.since_start(now())))


async def _live_pods(killer: PodKiller, namespace: str, selector: str) -> list[str]:
    try:
        return await run_blocking(killer.live_pods, namespace, selector)
    except KubeError as err:
        raise StageFailure("KubernetesError", str(err)) from err


def _describe(result: HypothesisResult) -> str:
    probes = "; ".join(p.describe() for p in result.probes)
    return f"{probes}: {'met' if result.met else 'NOT met'}"


def _span(window: Window) -> str:
    return f"{window.start:.2f}s to {window.end:.2f}s"
