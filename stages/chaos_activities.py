"""Shipyard's Chaos Toolkit activities: Python functions an experiment names as providers
(``module: stages.chaos_activities``), which Chaos Toolkit calls with the experiment's
arguments, its ``${...}`` placeholders filled from the configuration.

- probe ``http_steady_state``: the app's traffic through a URL (its Service) over a window
  of live load, as counts, ratios and latency quantiles;
- tolerance ``within_slo``: whether such a window keeps an SLO (as a ``type: probe``
  tolerance; Chaos Toolkit's own ``range`` with a ``target`` works on the window too);
- action ``kill_pods``: pods a label selector picks, killed with no grace period;
- actions ``inject_faults`` and ``clear_faults``: errors, latency or failing readiness
  written to the app's fault file (its ConfigMap), and the file put back as it was.

The cluster is reached as the kubeconfig the configuration's ``shipyard_kubeconfig`` names:
the gate and ``shipyard chaos run`` set it to the environment's deploy identity, so an
activity can do in the cluster what a deploy can, nothing more. Chaos Toolkit calls an
activity in the thread that runs the experiment: the load runs in an event loop of its own
(``asyncio.run``), and a run the stage abandons ends its probes at their next look and
refuses further chaos, while the rollbacks still run (``clear_faults`` ignores the
abandonment: it is what puts the environment back).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.adapters.blocking import check_abandoned
from shipyard.adapters.fault_configmaps import FaultConfigMaps
from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_identity import open_identity
from shipyard.adapters.load import LoadSpec, start_load
from shipyard.adapters.pod_killer import PodKiller
from shipyard.domain.chaos import KillAction, choose_victims
from shipyard.domain.chaos_experiments import (
    MAX_RATE_PER_SECOND,
    MAX_WINDOW_SECONDS,
    SloTolerance,
    measurement_of,
)
from shipyard.domain.fault_files import OPERATIONAL_PATHS, Faults
from shipyard.domain.traffic import Sample, summarize

__all__ = ["clear_faults", "http_steady_state", "inject_faults", "kill_pods", "within_slo"]

MAX_TIMEOUT_SECONDS = 30.0
CONFIRM_RATE_PER_SECOND = 5.0


def http_steady_state(url: str, paths: Sequence[str] | str = ("/version",),
                      seconds: float = 10.0, rate_per_second: float = 20.0,
                      timeout_seconds: float = 2.0, keep_alive: bool = True) -> dict[str, Any]:
    """Send ``rate_per_second`` GETs to ``url`` (``paths`` in turn) for ``seconds`` and
    return the window: ``requests``, ``failures`` (no answer or a 5xx), ``answered``,
    ``failure_ratio``, ``availability``, ``latency_p50|p95|p99`` (of the answered, in
    seconds), ``expected_requests``. A request unanswered after ``timeout_seconds``
    failed. What could not be measured counts as the worst (no request: failure ratio 1;
    no answer: the timeout as latency)."""
    window = _bounded("seconds", seconds, MAX_WINDOW_SECONDS)
    rate = _bounded("rate_per_second", rate_per_second, MAX_RATE_PER_SECOND)
    timeout = _bounded("timeout_seconds", timeout_seconds, MAX_TIMEOUT_SECONDS)
    chosen = _paths(paths)
    spec = LoadSpec(base_url=url, paths=chosen, rate_per_second=rate,
                    duration_seconds=window, max_requests=math.ceil(rate * window) + 1,
                    timeout_seconds=timeout, keep_alive=bool(keep_alive))
    samples = asyncio.run(_load(spec))
    return measurement_of(summarize(samples, start=0.0, end=window), seconds=window,
                          rate_per_second=rate, timeout_seconds=timeout, url=url,
                          paths=chosen)


def within_slo(value: Mapping[str, Any] | None = None, max_failure_ratio: float = 0.01,
               max_latency_p99_seconds: float = 1.0, min_requests: int = 1,
               min_load_share: float = 0.0) -> bool:
    """Whether a window of ``http_steady_state`` (``value``, which Chaos Toolkit passes to a
    ``type: probe`` tolerance) keeps the SLO: at most ``max_failure_ratio`` failed, a p99
    of at most ``max_latency_p99_seconds``, at least ``min_requests`` requests and
    ``min_load_share`` of those asked for."""
    tolerance = SloTolerance(max_failure_ratio=float(max_failure_ratio),
                             max_latency_p99_seconds=float(max_latency_p99_seconds),
                             min_requests=int(min_requests),
                             min_load_share=float(min_load_share))
    return tolerance.accepts(value if isinstance(value, Mapping) else None)


def kill_pods(namespace: str, selector: str, count: int | None = None,
              share: float | None = None, seed: int | None = None,
              configuration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Kill ``count`` (default 1) or a ``share`` of the running pods ``selector`` picks in
    ``namespace``, chosen at random by ``seed`` (drawn when not given), with no grace
    period. Returns ``candidates``, the pods ``killed``, those ``already_gone`` and the
    ``seed``. Fails when no pod runs, or every chosen one was gone."""
    check_abandoned()
    if count is None and share is None:
        count = 1
    action = KillAction(share=None if share is None else float(share),
                        count=None if count is None else int(count), target=selector)
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    killer = PodKiller(_kube(configuration))
    candidates = killer.live_pods(namespace, selector)
    if not candidates:
        raise LookupError(f"no running pod in {namespace} matches {selector!r}")
    rng = random.Random(int(seed))  # noqa: S311 -- a repeatable draw of victims, not a secret
    killed: list[str] = []
    gone: list[str] = []
    for pod in choose_victims(candidates, action, rng):
        (killed if killer.kill(namespace, pod) else gone).append(pod)
    if not killed:
        raise LookupError(f"every pod chosen in {namespace} ({', '.join(gone)}) was gone "
                          "before it could be killed")
    return {"namespace": namespace, "selector": selector, "seed": int(seed),
            "candidates": candidates, "killed": killed, "already_gone": gone}


def inject_faults(namespace: str, app: str, error_rate: float = 0.0, latency_ms: float = 0.0,
                  latency_jitter_ms: float = 0.0, readiness_fail: bool = False,
                  deployment: str | None = None, confirm_url: str | None = None,
                  confirm_paths: Sequence[str] | str = (), confirm_seconds: float = 120.0,
                  confirm_answers: int = 10,
                  configuration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write faults into the fault file of ``app``'s pods (Deployment ``deployment``,
    default ``app``, in ``namespace``): ``error_rate`` of the requests answer 500, each is
    delayed ``latency_ms`` plus up to ``latency_jitter_ms``, ``readiness_fail`` fails
    ``/readyz``. The file as it was is kept for ``clear_faults``.

    The kubelet rewrites a mounted ConfigMap when it next syncs the pod: up to 15 s later on
    the local cluster, 90 s on a kubelet with the default ``syncFrequency``.
    Given ``confirm_url`` (the Service) and the app's own ``confirm_paths`` (servicekit
    never faults ``/version`` and the other operational paths), the action waits, at most
    ``confirm_seconds``, until ``confirm_answers`` answers in a row (each on a new
    connection, so on any pod) show the faults; that needs a latency or an error rate of 1.
    """
    check_abandoned()
    faults = Faults(error_rate=float(error_rate), latency_ms=float(latency_ms),
                    latency_jitter_ms=float(latency_jitter_ms),
                    readiness_fail=bool(readiness_fail))
    if not faults.active:
        raise ValueError("no fault to inject: give error_rate, latency_ms, "
                         "latency_jitter_ms or readiness_fail")
    confirm = _confirmation(faults, confirm_url, confirm_paths)
    files = FaultConfigMaps(_kube(configuration))
    ref = files.locate(namespace, deployment or app)
    current = files.read(namespace, ref)
    files.write(namespace, ref, faults.to_text(),
                saved=current.text if current.saved is None else current.saved)
    result: dict[str, Any] = {"namespace": namespace, "configmap": ref.configmap,
                              "key": ref.key, "faults": json.loads(faults.to_text()),
                              "previous": current.text}
    if confirm is not None:
        result["confirmed_after_seconds"] = _wait_for(
            confirm, faults, shown=True, seconds=float(confirm_seconds),
            answers=int(confirm_answers))
    return result


def clear_faults(namespace: str, app: str, deployment: str | None = None,
                 confirm_url: str | None = None, confirm_paths: Sequence[str] | str = (),
                 confirm_seconds: float = 120.0, confirm_answers: int = 10,
                 configuration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Put ``app``'s fault file back as it was before ``inject_faults`` changed it;
    nothing to do (``restored`` false) when no experiment changed it. Safe to run whatever
    the method did: a rollback. Given ``confirm_url``, waits (as ``inject_faults`` does)
    until the answers no longer show the faults."""
    # Even when the stage that runs the experiment was abandoned: a fresh context carries
    # no abandonment, so the cluster calls go out and the environment is put back.
    return contextvars.Context().run(
        _restore, namespace, deployment or app, confirm_url, confirm_paths,
        float(confirm_seconds), int(confirm_answers), configuration)


def _restore(namespace: str, deployment: str, confirm_url: str | None,
             confirm_paths: Sequence[str] | str, confirm_seconds: float,
             confirm_answers: int, configuration: Mapping[str, Any] | None) -> dict[str, Any]:
    files = FaultConfigMaps(_kube(configuration))
    ref = files.locate(namespace, deployment)
    current = files.read(namespace, ref)
    result: dict[str, Any] = {"namespace": namespace, "configmap": ref.configmap,
                              "key": ref.key, "restored": current.saved is not None,
                              "faults": current.text if current.saved is None
                              else current.saved}
    if current.saved is None:
        return result
    files.write(namespace, ref, current.saved, saved=None)
    result["removed"] = current.text
    try:
        injected = Faults.from_text(current.text)
    except ValueError:
        return result  # not a file of ours to recognise in the answers
    confirm = _confirmation(injected, confirm_url, confirm_paths) if injected.active else None
    if confirm is not None:
        result["confirmed_after_seconds"] = _wait_for(
            confirm, injected, shown=False, seconds=confirm_seconds, answers=confirm_answers)
    return result


def _confirmation(faults: Faults, url: str | None,
                  paths: Sequence[str] | str) -> tuple[str, tuple[str, ...]] | None:
    """Where to see ``faults`` in the answers, or None when not asked to look."""
    if not url:
        return None
    if not faults.observable:
        raise ValueError("only a latency or an error rate of 1 shows in every answer; "
                         "leave confirm_url out and pause after the action instead")
    chosen = tuple(p for p in _paths(paths or ("/",)) if p not in OPERATIONAL_PATHS)
    if not chosen:
        raise ValueError(f"confirm_paths {paths!r} are operational paths, which servicekit "
                         "never faults; name one of the app's own (its load_paths)")
    return url, chosen


def _wait_for(where: tuple[str, tuple[str, ...]], faults: Faults, *, shown: bool,
              seconds: float, answers: int) -> float:
    """Seconds until ``answers`` answers in a row show ``faults`` (or, not ``shown``, none
    of them does); TimeoutError after ``seconds``."""
    url, paths = where
    seconds = _bounded("confirm_seconds", seconds, 600.0)
    timeout = min(MAX_TIMEOUT_SECONDS, 2.0 + 2 * (faults.latency_ms + faults.latency_jitter_ms)
                  / 1000)
    spec = LoadSpec(base_url=url, paths=tuple(paths), rate_per_second=CONFIRM_RATE_PER_SECOND,
                    duration_seconds=seconds,
                    max_requests=math.ceil(CONFIRM_RATE_PER_SECOND * seconds) + 1,
                    timeout_seconds=timeout, keep_alive=False)
    took = asyncio.run(_watch(spec, faults, shown, max(1, answers)))
    if took is None:
        what = "show" if shown else "stop showing"
        raise TimeoutError(f"the answers of {url} did not {what} the faults within "
                           f"{seconds:g}s (the kubelet rewrites a ConfigMap volume when it "
                           "next syncs the pod: up to 15 s later on the local "
                           "cluster, 90 s with the kubelet's default syncFrequency)")
    return round(took, 1)


async def _load(spec: LoadSpec) -> list[Sample]:
    """Run the load to its end; stop it at once if the stage abandons the work."""
    run = start_load(spec)
    try:
        while not run.done:
            check_abandoned()
            await asyncio.sleep(0.1)
        return await run.wait()
    finally:
        await run.stop()


async def _watch(spec: LoadSpec, faults: Faults, shown: bool, answers: int) -> float | None:
    """Seconds from the start until the last ``answers`` requests sent (that have had
    their timeout to end) all (don't) show ``faults``; None when the load ends first."""
    run = start_load(spec)
    started = time.monotonic()
    try:
        while True:
            # Only requests old enough to have ended one way or the other: a slow answer
            # still on its way must not be passed over for the quick ones sent after it.
            horizon = run.since_start(time.monotonic()) - spec.timeout_seconds
            settled = sorted((s for s in run.samples if s.started <= horizon),
                             key=lambda s: s.started)[-answers:]
            if len(settled) == answers and all(
                    s.answered and faults.shown_by(s.latency, s.status) is shown
                    for s in settled):
                return time.monotonic() - started
            if run.done:
                return None
            check_abandoned()
            await asyncio.sleep(0.2)
    finally:
        await run.stop()


def _kube(configuration: Mapping[str, Any] | None) -> Kube:
    """The cluster as the configuration's ``shipyard_kubeconfig`` names it."""
    path = (configuration or {}).get("shipyard_kubeconfig")
    if not isinstance(path, str) or not path:
        raise LookupError("the experiment's configuration has no shipyard_kubeconfig: the "
                          "gate and `shipyard chaos run` set it to the environment's deploy "
                          "identity; by hand, give the path of a kubeconfig")
    return open_identity(Path(path), what=f"the kubeconfig {path} (shipyard_kubeconfig)")


def _paths(paths: Sequence[str] | str) -> tuple[str, ...]:
    chosen = (paths,) if isinstance(paths, str) else tuple(paths)
    if not chosen or not all(isinstance(p, str) and p.startswith("/") for p in chosen):
        raise ValueError(f"paths must be one or more paths starting with /, not {paths!r}")
    return chosen


def _bounded(name: str, value: object, most: float) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]  # whatever the experiment wrote
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, not {value!r}") from err
    if not 0 < number <= most:
        raise ValueError(f"{name} must be in (0, {most:g}], not {value!r}")
    return number
