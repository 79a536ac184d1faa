"""The drift reconciler's ledger side on SQLite and PostgreSQL: intents settle with their
release, a lost switch is recorded from its intent, traffic gone back is recorded as a
rollback, a slot nothing names is reported and not guessed, a live deploy is left alone,
and a dry run changes nothing.

The cluster's answer (which slot each Service selects) comes from a table here; the same
reconciler reads a real cluster in the fault suite (a flow killed after the switch)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pipelines.drift import DriftReconciler, DriftReport
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.store import DeployLocks, Ledger, ReleaseRecord, Store

DIGEST = "sha256:" + "cd" * 32


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    yield opened
    opened.close()


def release(ledger: Ledger, app: str, slot: str, version: str) -> int:
    return ledger.record_release(app=app, version=version, environment="prod", kind="deploy",
                                 digest=DIGEST, actor="ann", why="test", slot=slot,
                                 manifests=f"kind: Deployment # {slot}").id


def intend(ledger: Ledger, app: str, slot: str, version: str, run_id: str | None = None
           ) -> int:
    return ledger.record_intent(app=app, environment="prod", kind="deploy", version=version,
                                slot=slot, digest=DIGEST, actor="ann", why="faster",
                                manifests=f"kind: Deployment # {slot}", run_id=run_id).id


def current(ledger: Ledger, app: str) -> ReleaseRecord:
    found = ledger.current_release(app, "prod")
    assert found is not None
    return found


def reconcile(store: Store, served: dict[str, str], *, dry_run: bool = False) -> DriftReport:
    settings = Settings(environments=["staging", "prod"])
    reconciler = DriftReconciler(store, settings,
                                 served=lambda app, environment: served.get(app, ""))
    return asyncio.run(reconciler.reconcile_once(dry_run=dry_run))


def test_a_recorded_release_settles_its_intent(store: Store) -> None:
    ledger = Ledger(store)
    intent = intend(ledger, "a1", "v001", "aaa")
    recorded = ledger.record_release(app="a1", version="aaa", environment="prod",
                                     kind="deploy", digest=DIGEST, actor="ann", why="t",
                                     slot="v001", intent_id=intent)
    assert ledger.pending_intents("a1", "prod") == []
    report = reconcile(store, {"a1": "v001"})
    assert report.found == [] and current(ledger, "a1").id == recorded.id


def test_a_switch_whose_record_was_lost_is_recorded_from_its_intent(store: Store) -> None:
    ledger = Ledger(store)
    release(ledger, "a2", "v001", "aaa")
    run = store.create_run("cd", [StageSpec("prod:a2")], trigger="test", app="a2")
    store.abandon_run(run.id, evidence="killed after the switch")
    intend(ledger, "a2", "v002", "bbb", run_id=run.id)
    dry = reconcile(store, {"a2": "v002"}, dry_run=True)
    assert [f.action for f in dry.found] == ["record-intent"]
    assert current(ledger, "a2").slot == "v001"  # a dry run records nothing
    report = reconcile(store, {"a2": "v002"})
    [found] = report.found
    now = current(ledger, "a2")
    assert found.release_id == now.id
    assert (now.slot, now.version, now.kind, now.run_id) == ("v002", "bbb", "deploy", run.id)
    assert now.manifests == "kind: Deployment # v002"
    assert now.why.startswith("recorded by the drift reconciler: the cluster serves v002")
    assert ledger.pending_intents("a2", "prod") == []
    audit = [e for e in ledger.audit_trail(subject_kind="app", subject_id="a2")
             if e.action == "ledger.repaired"]
    assert audit and audit[0].details["release"] == now.id
    assert reconcile(store, {"a2": "v002"}).found == []  # repaired once


def test_an_intent_the_cluster_never_served_is_settled_not_applied(store: Store) -> None:
    ledger = Ledger(store)
    first = release(ledger, "a3", "v001", "aaa")
    intend(ledger, "a3", "v002", "bbb")
    assert reconcile(store, {"a3": "v001"}).found == []
    assert ledger.pending_intents("a3", "prod") == []
    assert current(ledger, "a3").id == first


def test_traffic_gone_back_unrecorded_is_recorded_as_a_rollback(store: Store) -> None:
    ledger = Ledger(store)
    first = release(ledger, "a4", "v001", "aaa")
    release(ledger, "a4", "v002", "bbb")
    reconcile(store, {"a4": "v001"})
    back = current(ledger, "a4")
    assert (back.kind, back.slot, back.source_release_id) == ("rollback", "v001", first)


def test_a_slot_nothing_names_is_reported_and_nothing_recorded(store: Store) -> None:
    ledger = Ledger(store)
    second = release(ledger, "a5", "v002", "bbb")
    [found] = reconcile(store, {"a5": "v009"}).found
    assert found.action == "unexplained" and found.release_id is None
    assert current(ledger, "a5").id == second
    assert any(e.action == "ledger.drift"
               for e in ledger.audit_trail(subject_kind="app", subject_id="a5"))


def test_an_app_a_live_run_is_deploying_is_left_alone(store: Store) -> None:
    ledger = Ledger(store)
    release(ledger, "a6", "v001", "aaa")
    intend(ledger, "a6", "v002", "bbb")
    run = store.create_run("cd", [StageSpec("prod:a6")], trigger="test", app="a6")
    store.transition_stage(run.id, "prod:a6", State.RUNNING, reason="Started")
    assert DeployLocks(store).acquire("a6", "prod", run.id) is None
    report = reconcile(store, {"a6": "v002"})  # mid-switch: not a drift yet
    assert report.found == [] and "a6/prod" in report.skipped
    assert len(ledger.pending_intents("a6", "prod")) == 1
