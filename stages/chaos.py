"""The chaos gate: a Chaos Toolkit experiment on the new version's pods, run inside the CD
pipeline before promotion.

The experiment is Chaos Toolkit's own document: the app's file (``chaos.experiment`` in its
``app.yaml``) or, without one, the default the gate generates from the app's SLO
(``shipyard.domain.chaos_experiments.default_experiment``: the SLO held through the
Service while ``chaos.kill`` pods are killed). The gate fills the experiment's
configuration with where to act (the ``shipyard_*`` keys: namespace, selector, Service URL,
load paths, windows, the deploy identity's kubeconfig), refuses what may not run on the
worker (``refusals``), has Chaos Toolkit validate it, and runs it with
``chaostoolkit-lib`` in a worker thread: hypothesis, method, hypothesis, then the rollbacks,
whatever the verdict (``shipyard.adapters.chaos_toolkit.ROLLBACK_STRATEGY``).

The journal becomes the report (``report_from_journal``): a hypothesis unmet before the
method fails the stage with ``SteadyStateNotMet`` (aborted), unmet after it with
``ChaosDeviated``; an action that failed with ``ChaosMethodFailed``, a run Chaos Toolkit
broke off with ``ChaosInterrupted``, a rollback that failed with ``ChaosRollbackFailed``.
Every report is the stage's outputs (:class:`ChaosResult`'s fields), passed or failed,
goes to the audit trail (the gate deleted pods or wrote faults, and says so) and into the
stage's log as JSON; the journal, trimmed, is part of it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from shipyard.adapters import chaos_toolkit
from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.kube_identity import deploy_kubeconfig
from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.chaos import ChaosReport, KillAction, Verdict
from shipyard.domain.chaos_experiments import (
    MAX_SETTLE_SECONDS,
    MAX_WINDOW_SECONDS,
    GateConfiguration,
    InvalidChaosExperiment,
    default_experiment,
    refusals,
    title_of,
    with_configuration,
)
from shipyard.domain.chaos_journal import describe_step, report_from_journal
from shipyard.store import Ledger
from stages.cluster import open_kube
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["CHAOS_TIMEOUT_SECONDS", "ChaosDeviated", "ChaosGateFailed", "ChaosResult",
           "SteadyStateNotMet", "prepare_experiment", "run_chaos_verification",
           "run_prepared_experiment", "verify_chaos"]

FAULT_WAIT_SECONDS = 150.0
"""Room for an action that waits for a fault file to reach the pods and for its rollback
(the kubelet's sync, up to 90 s, and the answers that confirm it)."""
CHAOS_TIMEOUT_SECONDS = 2 * MAX_WINDOW_SECONDS + MAX_SETTLE_SECONDS + 2 * FAULT_WAIT_SECONDS + 120
"""The longest experiment the bounds allow, plus time for the API calls and stragglers."""

Log = Callable[[str], Coroutine[Any, Any, None]]


class ChaosResult(StageResult):
    """An experiment's verdict, the seed the gate drew for it (the default experiment's
    choice of victims), where the experiment came from and the report
    (``ChaosReport.to_json()``, the trimmed journal included)."""

    app: str
    verdict: Verdict
    seed: int
    report: dict[str, Any]
    source: str = ""

    def summary(self) -> str:
        return str(self.report["summary"])


class ChaosGateFailed(StageFailure):
    """An experiment that did not pass, or whose rollbacks failed; its reason is the
    report's (:attr:`ChaosReport.reason`)."""

    def __init__(self, result: ChaosResult, report: ChaosReport) -> None:
        super().__init__(report.reason, report.summary(),
                         outputs=result.model_dump(mode="json"))
        self.report = report


class SteadyStateNotMet(ChaosGateFailed):
    """The hypothesis did not hold before the method: the experiment was aborted."""


class ChaosDeviated(ChaosGateFailed):
    """The hypothesis held before the method and not after it."""


_FAILURES: dict[str, type[ChaosGateFailed]] = {"SteadyStateNotMet": SteadyStateNotMet,
                                                "ChaosDeviated": ChaosDeviated}


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
    # the app's resilience: the settle waits it out.
    settle_seconds: float = 5.0,
    rate_per_second: float = 20.0,
    kill_count: int | None = None,
    kill_share: float | None = None,
    seed: int | None = None,
    experiment: Mapping[str, Any] | None = None,
    experiment_source: str = "",
    allowed_activities: Sequence[str] = (),
) -> ChaosResult:
    """Run ``experiment`` (a Chaos Toolkit experiment read from ``experiment_source``), or
    without one the default experiment for ``app`` (kill ``kill_count`` pods, default 1, or
    a ``kill_share`` of the running pods ``selector`` picks in ``namespace``), against the
    app's Service at ``target_url``: load on ``paths`` at ``rate_per_second``, windows of
    ``window_seconds``, a settle of ``settle_seconds`` after the kill. ``seed`` makes the
    choice of victims repeatable (one is drawn and logged when not given).
    ``allowed_activities`` names modules (or ``http``, ``process``) the experiment may
    call besides Shipyard's.

    Raises :class:`ChaosGateFailed` with the report (:class:`SteadyStateNotMet`,
    :class:`ChaosDeviated`, or reason ``ChaosMethodFailed``, ``ChaosInterrupted``,
    ``ChaosRollbackFailed``), and ``StageFailure`` with ``InvalidChaosInput``,
    ``ClusterUnavailable`` or ``NoDeployIdentity`` when the experiment cannot be run.
    """
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    try:
        configuration = GateConfiguration.for_app(
            app, kubeconfig=str(deploy_kubeconfig(ctx.settings.home, namespace)),
            namespace=namespace, selector=selector, service_url=target_url, paths=paths,
            window_seconds=window_seconds, settle_seconds=settle_seconds,
            rate_per_second=rate_per_second, seed=seed)
        if experiment is None:
            if kill_count is None and kill_share is None:
                kill_count = 1
            kill = KillAction(share=kill_share, count=kill_count, target=selector)
            experiment = default_experiment(app, kill=kill)
            experiment_source = f"generated for {app.name} (no chaos.experiment)"
        prepared = await run_blocking(prepare_experiment, experiment,
                                      configuration.to_configuration(),
                                      source=experiment_source or "the experiment",
                                      allowed=allowed_activities)
    except ValueError as err:  # InvalidChaosExperiment included
        raise StageFailure("InvalidChaosInput", str(err)) from err
    await open_kube(ctx, namespace)  # the identity exists and the API server answers
    await ctx.log(f"experiment: {title_of(prepared)} ({experiment_source}; seed {seed})")
    await ctx.log(f"load: {rate_per_second:g} requests/s to {target_url} "
                  f"({', '.join(configuration.paths)}), timeout "
                  f"{configuration.timeout_seconds:g}s; windows of {window_seconds:g}s, "
                  f"settle {settle_seconds:g}s; rollbacks: "
                  f"{chaos_toolkit.ROLLBACK_STRATEGY}")
    report = await run_prepared_experiment(prepared, source=experiment_source,
                                           target=selector, log=ctx.log)
    data = report.to_json()
    await ctx.log(f"verdict: {report.summary()}")
    await ctx.log("report: " + json.dumps({k: v for k, v in data.items() if k != "journal"},
                                          ensure_ascii=False))
    await asyncio.to_thread(Ledger(ctx.store).audit, actor="shipyard",
                            action="chaos-experiment", subject_kind="run",
                            subject_id=ctx.run_id,
                            details={"stage": ctx.ref, "app": app.name, "namespace": namespace,
                                     "seed": seed, **{k: v for k, v in data.items()
                                                      if k != "journal"}})
    result = ChaosResult(app=app.name, verdict=report.verdict, seed=seed, report=data,
                         source=experiment_source)
    if report.reason:
        raise _FAILURES.get(report.reason, ChaosGateFailed)(result, report)
    return result


verify_chaos = stage("chaos", timeout_seconds=CHAOS_TIMEOUT_SECONDS)(run_chaos_verification)


def prepare_experiment(experiment: Mapping[str, Any], configuration: Mapping[str, Any], *,
                       source: str, allowed: Sequence[str] = (),
                       environment: bool = False) -> dict[str, Any]:
    """``experiment`` with ``configuration`` laid over its own, checked: what the gate
    refuses to run (``refusals``; ``environment`` lets it read the environment, as a run
    by hand may), then Chaos Toolkit's validation. Raises
    :class:`InvalidChaosExperiment` naming ``source`` and every problem. Blocking: Chaos
    Toolkit imports the activities' modules to check their arguments."""
    prepared = with_configuration(experiment, configuration)
    problems = refusals(prepared, allowed=allowed, environment=environment)
    if problems:
        raise InvalidChaosExperiment(f"{source}: " + "; ".join(problems))
    chaos_toolkit.validate_experiment(prepared, source=source)
    return prepared


async def run_prepared_experiment(experiment: Mapping[str, Any], *, source: str,
                                  target: str, log: Log) -> ChaosReport:
    """Run a prepared experiment in a worker thread, each step a line of ``log`` as it
    happens, and make its journal the report."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def write(line: str) -> None:
        task = loop.create_task(log(line))
        pending.add(task)  # held until written: the loop keeps only weak references
        task.add_done_callback(pending.discard)

    def step(kind: str, data: Mapping[str, Any]) -> None:
        line = describe_step(kind, data)
        if line is not None:
            loop.call_soon_threadsafe(write, line)

    try:
        journal = await run_blocking(chaos_toolkit.run_experiment, experiment, on_event=step)
    finally:
        await asyncio.sleep(0)  # the lines the thread queued become tasks
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return report_from_journal(journal, target=target, source=source)
