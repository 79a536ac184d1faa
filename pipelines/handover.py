"""Handing recorded runs to Prefect: once each, and again until Prefect takes them.

Every run started from outside Prefect (the CLI, the webhook, ``shipyard trigger``) is
recorded as queued first and handed over second: a flow run of the pipeline's deployment
is created with the run id as idempotency key, so asking twice (a retry after a lost
answer, the reconciler racing the first attempt) makes one flow run, which adopts the
recorded run. When Prefect does not take a run, the caller's :class:`OnRefusal` decides:
the CLI cancels it (someone is there to read the error and retry), the webhook keeps it
queued, noted as waiting for Prefect, and the :class:`Reconciler` hands it over once
Prefect answers, so no trigger is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

from shipyard.adapters.prefect_api import start_deployment
from shipyard.adapters.prefect_errors import PrefectUnavailable
from shipyard.domain.clock import Clock, system_clock
from shipyard.store import RunRecord, Store

__all__ = ["HandOverFailed", "OnRefusal", "PassReport", "Reconciler", "StartDeployment",
           "flow_parameters", "hand_over"]

log = logging.getLogger("shipyard.handover")

_MAX_BACKOFF_SECONDS = 300.0


class StartDeployment(Protocol):
    """What :func:`shipyard.adapters.prefect.start_deployment` promises: a flow run id,
    the same one for the same ``idempotency_key``."""

    def __call__(self, name: str, parameters: dict[str, Any], *,
                 idempotency_key: str | None = None) -> Awaitable[str]: ...


class OnRefusal(StrEnum):
    """What becomes of a run Prefect does not take."""

    CANCEL = "cancel"  # cancelled with reason HandOverFailed
    KEEP_QUEUED = "keep-queued"  # stays queued, noted AwaitingPrefect, for the reconciler


class HandOverFailed(RuntimeError):
    """Prefect did not take the run; the message says why and what became of the run."""

    def __init__(self, message: str, *, run_id: str, unavailable: bool) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.unavailable = unavailable


def flow_parameters(record: RunRecord) -> dict[str, Any]:
    """The flow's parameters for a recorded run: what was asked, and the run to adopt."""
    return {**record.parameters, "run_id": record.id, "trigger": record.trigger,
            "actor": record.actor}


async def _start(store: Store, record: RunRecord, start: StartDeployment) -> RunRecord:
    flow_run_id = await start(f"{record.pipeline}/{record.pipeline}", flow_parameters(record),
                              idempotency_key=record.id)
    return await asyncio.to_thread(store.record_hand_over, record.id, flow_run_id)


def _why(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


async def hand_over(store: Store, record: RunRecord, *, on_refusal: OnRefusal,
                    start: StartDeployment = start_deployment) -> RunRecord:
    """Hand ``record`` to its Prefect deployment and return it linked to the flow run.

    If Prefect does not take it, the run is cancelled or kept queued as ``on_refusal``
    says, and :class:`HandOverFailed` is raised either way.
    """
    try:
        return await _start(store, record, start)
    except Exception as err:
        unavailable = isinstance(err, PrefectUnavailable)
        asked = f"{record.pipeline} run {record.short_id}"
        if on_refusal is OnRefusal.CANCEL:
            await asyncio.to_thread(
                store.cancel_run, record.id, reason="HandOverFailed",
                message=f"Prefect did not take the run: {_why(err)}")
            raise HandOverFailed(
                f"Prefect did not take {asked} ({_why(err)}); is the Prefect server up and "
                "are the deployments applied? `shipyard up` does both",
                run_id=record.id, unavailable=unavailable) from err
        await asyncio.to_thread(store.note_hand_over_refused, [record.id], _why(err))
        raise HandOverFailed(
            f"Prefect did not take {asked} ({_why(err)}); it stays queued and `shipyard ui` "
            "hands it over once Prefect answers (`shipyard up` starts Prefect)",
            run_id=record.id, unavailable=unavailable) from err


@dataclass
class PassReport:
    """What one reconciliation pass did."""

    handed_over: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # run id: why
    unavailable: str | None = None  # why Prefect could not be reached, if it could not
    more: bool = False  # a full batch went over: more runs may wait, pass again at once


class Reconciler:
    """Hands every queued run that no flow run has taken to Prefect, oldest first.

    One pass runs at start, then one every ``interval_seconds``, and one as soon as
    :meth:`wake` says a new run was recorded. A pass stops at the first sign that Prefect
    is unreachable (asking for every run would only repeat the answer) and notes the
    waiting runs; the next pass waits for the full interval, however often it is woken,
    and sends one run ahead to see whether Prefect is back before the others. A run
    Prefect refuses for itself (say, its deployment is missing) is retried with a backoff
    of its own, so it never holds the others up.

    Runs recorded by other processes in the last ``grace_seconds`` are left to their own
    hand-over; the idempotency key would make a race harmless, but not free.
    """

    def __init__(self, store: Store, *, interval_seconds: float,
                 grace_seconds: float | None = None, concurrency: int = 8, batch: int = 200,
                 start: StartDeployment = start_deployment, clock: Clock = system_clock,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.interval = interval_seconds
        self.grace = timedelta(seconds=interval_seconds if grace_seconds is None
                               else grace_seconds)
        self.batch = batch
        self._start = start
        self._clock = clock
        self._monotonic = monotonic
        self._slots = asyncio.Semaphore(concurrency)
        self._woken = asyncio.Event()
        self._fresh: set[str] = set()
        self._retry_at: dict[str, tuple[int, float]] = {}  # run id: (refusals, when)
        self._prefect_down = False

    def wake(self, run_id: str | None = None) -> None:
        """A run was just recorded (by this process): hand it over now, not at the next
        tick."""
        if run_id is not None:
            self._fresh.add(run_id)
        self._woken.set()

    async def run(self) -> None:
        """Reconcile until cancelled."""
        while True:
            self._woken.clear()
            try:
                report = await self.reconcile_once()
            except Exception:  # the store is unreachable, say: try again next interval
                log.exception("handing queued runs to Prefect failed; retrying in %.0fs",
                              self.interval)
                report = PassReport(unavailable="error")
            if report.unavailable is not None:
                await asyncio.sleep(self.interval)
            elif not report.more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), self.interval)

    async def reconcile_once(self) -> PassReport:
        """One pass over the runs waiting for Prefect."""
        report = PassReport()
        cutoff = self._clock() - self.grace
        waiting = await asyncio.to_thread(self.store.awaiting_hand_over, limit=self.batch)
        full = len(waiting) == self.batch
        if not full:  # forget runs that no longer wait (taken elsewhere, cancelled)
            ids = {r.id for r in waiting}
            self._fresh &= ids
            self._retry_at = {k: v for k, v in self._retry_at.items() if k in ids}
        now = self._monotonic()
        due = [r for r in waiting
               if (r.id in self._fresh or r.created_at < cutoff)
               and self._retry_at.get(r.id, (0, now))[1] <= now]
        if self._prefect_down and due:
            # One run asks whether Prefect is back; the others follow only if it is.
            await self._try(due[0], report)
            due = due[1:] if report.unavailable is None else []
        await asyncio.gather(*(self._try(record, report) for record in due))
        if report.unavailable is not None:
            # Say on every waiting run why it waits; those already saying so are skipped.
            silent = [r.id for r in waiting if r.reason != "AwaitingPrefect"
                      and r.id not in report.refused]
            await asyncio.to_thread(self.store.note_hand_over_refused, silent,
                                    report.unavailable)
            if full:  # and the runs beyond this pass's batch
                await asyncio.to_thread(
                    functools.partial(self.store.note_hand_over_refused, None,
                                      report.unavailable, besides=list(report.refused)))
        self._fresh.difference_update(report.handed_over, report.refused)
        if report.unavailable is not None and not self._prefect_down:
            self._prefect_down = True
            log.warning("Prefect cannot take runs (%s); %d wait, asking again every %.0fs",
                        report.unavailable, len(waiting), self.interval)
        elif report.handed_over and self._prefect_down:
            self._prefect_down = False
            log.info("Prefect takes runs again")
        report.more = full and bool(report.handed_over) and report.unavailable is None
        return report

    async def _try(self, record: RunRecord, report: PassReport) -> None:
        async with self._slots:
            if report.unavailable is not None:
                return
            try:
                await _start(self.store, record, self._start)
            except Exception as err:
                why = _why(err)
                report.refused[record.id] = why
                await asyncio.to_thread(self.store.note_hand_over_refused, [record.id], why)
                if isinstance(err, PrefectUnavailable):
                    report.unavailable = why
                    return
                refusals = self._retry_at.get(record.id, (0, 0.0))[0] + 1
                delay = min(self.interval * 2 ** refusals, _MAX_BACKOFF_SECONDS)
                self._retry_at[record.id] = (refusals, self._monotonic() + delay)
                log.warning("Prefect refused %s run %s (%s); retrying in %.0fs",
                            record.pipeline, record.short_id, why, delay)
                return
            self._retry_at.pop(record.id, None)
            report.handed_over.append(record.id)
            log.info("handed %s run %s to Prefect", record.pipeline, record.short_id)
