"""The run sweeper: nothing stays running after its process died.

A flow's process can die anywhere: the worker and the flow SIGKILLed, the machine
rebooted, an out-of-memory kill. Its run would then say ``running`` forever, and its deploy
locks would hold its apps and environments. The sweeper compares every unfinished run in
the store with Prefect's word on its flow run and the flow's heartbeat
(:func:`shipyard.domain.sweeps.abandonment` says what counts as evidence), and settles
each run that lost its process: failed with reason ``Abandoned`` and the evidence as its
message, its unfinished stages ``Abandoned``, its deploy locks given back, its Prefect
flow run marked crashed. Every settlement is audited.

It runs in ``shipyard ui``'s process every ``SHIPYARD_SWEEP_INTERVAL_SECONDS``, and by
hand as ``shipyard reconcile [--dry-run]``. When Prefect cannot be asked, it settles
nothing: silence is not evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from pipelines.drift import DriftReconciler, DriftReport
from shipyard.adapters.prefect import PrefectError, crash_flow_run, flow_run_views
from shipyard.domain.clock import Clock, system_clock
from shipyard.domain.sweeps import FlowRunView, RunView, abandonment
from shipyard.settings import Settings
from shipyard.store import Ledger, RunRecord, Store

__all__ = ["Abandoned", "SweepReport", "Sweeper"]

log = logging.getLogger("shipyard.sweeper")

FlowRunViews = Callable[[Sequence[str]], Awaitable[dict[str, FlowRunView]]]
CrashFlowRun = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Abandoned:
    """A run the sweep found without its process, and the evidence."""

    run_id: str
    pipeline: str
    app: str | None
    state: str
    evidence: str


@dataclass
class SweepReport:
    """What one sweep saw and did."""

    checked: int = 0
    abandoned: list[Abandoned] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)  # ids, unless a dry run
    unavailable: str | None = None  # why Prefect could not be asked: nothing was judged
    drift: DriftReport | None = None  # the ledger's repairs after the sweep, if asked


class Sweeper:
    """Sweeps the store's unfinished runs (see the module's docstring)."""

    def __init__(self, store: Store, *, interval_seconds: float,
                 heartbeat_limit_seconds: float, grace_seconds: float = 30.0,
                 batch: int = 1000, views: FlowRunViews = flow_run_views,
                 crash: CrashFlowRun = crash_flow_run, clock: Clock = system_clock,
                 drift: DriftReconciler | None = None) -> None:
        self.store = store
        self.interval = interval_seconds
        self.heartbeat_limit = timedelta(seconds=heartbeat_limit_seconds)
        self.grace = timedelta(seconds=grace_seconds)
        self.batch = batch
        self._views = views
        self._crash = crash
        self._clock = clock
        self._drift = drift

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> Sweeper:
        """The sweeper the settings describe, repairing the ledger after each sweep: what
        ``shipyard ui`` runs on its own and ``shipyard reconcile`` runs by hand."""
        return cls(store, interval_seconds=settings.sweep_interval_seconds,
                   heartbeat_limit_seconds=settings.abandon_after_seconds,
                   grace_seconds=settings.sweep_grace_seconds,
                   drift=DriftReconciler(store, settings))

    async def run(self) -> None:
        """Sweep every interval until cancelled."""
        while True:
            try:
                report = await self.sweep_once()
                if report.unavailable:
                    log.warning("sweep skipped: %s", report.unavailable)
                if report.drift is not None:
                    for found in report.drift.found:
                        log.warning("ledger drift in %s/%s: %s (%s)", found.app,
                                    found.environment, found.message, found.action)
            except Exception:  # the store is unreachable, say: try again next interval
                log.exception("sweeping unfinished runs failed; retrying in %.0fs",
                              self.interval)
            await asyncio.sleep(self.interval)

    async def sweep_once(self, *, dry_run: bool = False) -> SweepReport:
        """One sweep: judge every unfinished run and, unless ``dry_run``, settle those
        that lost their process."""
        runs = await asyncio.to_thread(self.store.unfinished_runs, limit=self.batch)
        report = SweepReport(checked=len(runs))
        asked = [r.prefect_flow_run_id for r in runs if r.prefect_flow_run_id]
        try:
            views = await self._views(asked) if asked else {}
        except PrefectError as err:
            report.unavailable = f"Prefect cannot be asked about flow runs: {err}"
            return report
        now = self._clock()
        for run in runs:
            flow_run = views.get(run.prefect_flow_run_id) if run.prefect_flow_run_id else None
            evidence = abandonment(_view(run), flow_run, now=now,
                                   heartbeat_limit=self.heartbeat_limit, grace=self.grace)
            if evidence is not None:
                report.abandoned.append(Abandoned(run.id, run.pipeline, run.app,
                                                  run.state.value, evidence))
        if not dry_run:
            for found in report.abandoned:
                if await self._settle(found):
                    report.settled.append(found.run_id)
        if self._drift is not None:
            # After the runs are settled: their locks no longer hold the ledger's repair.
            report.drift = await self._drift.reconcile_once(dry_run=dry_run)
        return report

    async def _settle(self, found: Abandoned) -> bool:
        settled = await asyncio.to_thread(self.store.abandon_run, found.run_id,
                                          evidence=found.evidence)
        if settled is None:
            return False  # it ended by itself meanwhile
        await asyncio.to_thread(
            Ledger(self.store).audit, actor="shipyard", action="run.abandoned",
            subject_kind="run", subject_id=found.run_id,
            details={"pipeline": found.pipeline, "app": found.app, "was": found.state,
                     "evidence": found.evidence})
        log.warning("settled %s run %s as abandoned: %s", found.pipeline, found.run_id[:8],
                    found.evidence)
        if settled.prefect_flow_run_id:
            with contextlib.suppress(PrefectError):  # the store is right; Prefect follows
                await self._crash(settled.prefect_flow_run_id,
                                  message=f"Shipyard settled run {found.run_id[:8]} as "
                                          f"abandoned: {found.evidence}")
        return True


def _view(run: RunRecord) -> RunView:
    return RunView(run.state, run.created_at, run.started_at, run.heartbeat_at,
                   run.prefect_flow_run_id)
