"""The drift reconciler: the ledger names what the cluster serves.

For every app the ledger knows in a red/black environment, it reads the slot the app's
Service selects (as the read-only identity) and, unless a live run holds that app and
environment's deploy lock (a switch may be under way), repairs the ledger as
:func:`shipyard.domain.drift.repair_for` says: records the release a lost switch's intent
describes, records a rollback to an earlier release traffic went back to, settles intents
that never took effect, and reports, never guesses, a slot nothing names. Every repair
and every unexplained drift is audited (``ledger.repaired``, ``ledger.drift``).

It runs after each sweep of the run sweeper (:mod:`pipelines.sweeper`), so a run settled
``Abandoned`` has its half-recorded switch repaired in the same pass, and by hand in
``shipyard reconcile``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import KubeError
from shipyard.domain.drift import Drift, Intent, Recorded, repair_for
from shipyard.settings import Settings
from shipyard.store import DeployLocks, IntentRecord, Ledger, ReleaseRecord, Store
from stages.cluster import open_viewer
from stages.rollouts import serving_slot

__all__ = ["DriftReconciler", "DriftReport", "Found"]

ServedSlot = Callable[[str, str], str]  # (app, environment) -> the slot served


@dataclass(frozen=True)
class Found:
    """A drift found in one app and environment, and whether it was repaired."""

    app: str
    environment: str
    action: str
    message: str
    release_id: int | None = None  # the release recorded, when one was


@dataclass
class DriftReport:
    checked: int = 0
    found: list[Found] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # "app/env": why
    unavailable: str | None = None  # why the cluster could not be read: nothing changed


class DriftReconciler:
    """Repairs the ledger to what the cluster serves (see the module's docstring)."""

    def __init__(self, store: Store, settings: Settings, *,
                 served: ServedSlot | None = None) -> None:
        self.store = store
        self.settings = settings
        self._served = served

    async def reconcile_once(self, *, dry_run: bool = False) -> DriftReport:
        """One pass over every app of the production environment."""
        report = DriftReport()
        served = self._served
        if served is None:
            kube, why = await asyncio.to_thread(open_viewer, self.settings)
            if kube is None:
                report.unavailable = f"the cluster cannot be read: {why}"
                return report
            served = _served_by(kube, self.settings)
        ledger = Ledger(self.store)
        environment = self.settings.production_environment
        current = await asyncio.to_thread(ledger.all_current_releases)
        pending = await asyncio.to_thread(ledger.pending_intents, None, environment)
        apps = sorted({app for app, env in current if env == environment}
                      | {i.app for i in pending})
        for app in apps:
            report.checked += 1
            busy = await asyncio.to_thread(self._live_holder, app, environment)
            if busy:
                report.skipped[f"{app}/{environment}"] = f"run {busy[:8]} is deploying it"
                continue
            try:
                slot = await asyncio.to_thread(served, app, environment)
            except KubeError as err:
                report.skipped[f"{app}/{environment}"] = f"cannot read its Service: {err}"
                continue
            history = await asyncio.to_thread(ledger.releases, app, environment, limit=200)
            mine = [i for i in pending if i.app == app]
            drift = repair_for(_recorded(history[0]) if history else None, slot,
                               [_intent(i) for i in mine], [_recorded(r) for r in history])
            if drift is None:
                continue
            found = await asyncio.to_thread(self._act, ledger, app, environment, drift,
                                            history, dry_run)
            if found is not None:
                report.found.append(found)
        return report

    def _live_holder(self, app: str, environment: str) -> str | None:
        holder = DeployLocks(self.store).holder(app, environment)
        if holder is None:
            return None
        return None if self.store.get_run(holder).state.is_terminal else holder

    def _act(self, ledger: Ledger, app: str, environment: str, drift: Drift,
             history: list[ReleaseRecord], dry_run: bool) -> Found | None:
        if not dry_run and drift.stale:
            ledger.settle_intents([i.intent_id for i in drift.stale], "not-applied")
        if drift.action == "settle-stale":
            return None
        recorded: ReleaseRecord | None = None
        why = f"recorded by the drift reconciler: {drift.message}"
        if not dry_run and drift.action == "record-intent" and drift.intent is not None:
            recorded = ledger.release_from_intent(drift.intent.intent_id, why=why[:2000])
        elif not dry_run and drift.action == "record-rollback" and drift.earlier is not None:
            earlier = next(r for r in history if r.id == drift.earlier.release_id)
            recorded = ledger.record_release(
                app=app, version=earlier.version, environment=environment, kind="rollback",
                digest=earlier.digest, manifests=earlier.manifests, slot=earlier.slot,
                actor="shipyard", why=why[:2000], source_release_id=earlier.id)
        if not dry_run:
            ledger.audit(actor="shipyard",
                         action="ledger.drift" if drift.action == "unexplained"
                         else "ledger.repaired", subject_kind="app", subject_id=app,
                         details={"environment": environment, "action": drift.action,
                                  "message": drift.message,
                                  "release": recorded.id if recorded else None})
        return Found(app, environment, drift.action, drift.message,
                     recorded.id if recorded else None)


def _served_by(kube: Kube, settings: Settings) -> ServedSlot:
    def served(app: str, environment: str) -> str:
        return serving_slot(kube, settings.namespace_for(environment), app)
    return served


def _recorded(release: ReleaseRecord) -> Recorded:
    return Recorded(release.id, release.version, release.slot)


def _intent(intent: IntentRecord) -> Intent:
    return Intent(intent.id, intent.run_id, intent.slot, intent.version, intent.kind)
