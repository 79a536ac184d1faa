"""Retention on real databases (SQLite and PostgreSQL): what ``shipyard gc`` deletes, and
what the history still needs and keeps, however old."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shipyard.domain.clock import FrozenClock
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import (
    DeployLocks,
    Ledger,
    Retention,
    RetentionReport,
    RunNotFound,
    Store,
)
from shipyard.store.deliveries import production_deployments

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DAY = 86400.0
IMAGE = "sha256:" + "ab" * 32
OTHER_IMAGE = "sha256:" + "cd" * 32
STAGES = (StageSpec("checkout"), StageSpec("build", ("checkout",)))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def store(store_url: str, clock: FrozenClock) -> Iterator[Store]:
    opened = Store.open(store_url, clock=clock)
    yield opened
    opened.close()


def ended_run(store: Store, *, outcome: State = State.SUCCEEDED, app: str | None = None,
              restarted_from: str | None = None) -> str:
    """A run whose two stages ran, each logging a line, and which ended in ``outcome``."""
    run_id = store.create_run("ci", STAGES, trigger="manual", app=app,
                              restarted_from=restarted_from).id
    for spec in STAGES:
        store.transition_stage(run_id, spec.ref, State.RUNNING, reason="Started")
        store.append_log(run_id, spec.ref, f"{spec.ref} says hello\n")
        last = spec is STAGES[-1]
        store.transition_stage(run_id, spec.ref, outcome if last else State.SUCCEEDED,
                               reason="Done")
    store.finish_run(run_id)
    return run_id


def sweep(store: Store, clock: FrozenClock, *, dry_run: bool = False,
          **options: int) -> RetentionReport:
    """gc as the CLI runs it by default: runs ended 90 days ago, deliveries 30."""
    now = clock()
    return Retention(store, **options).delete_expired(
        runs_before=now - timedelta(days=90), deliveries_before=now - timedelta(days=30),
        dry_run=dry_run)


def exists(store: Store, run_id: str) -> bool:
    try:
        store.get_run(run_id)
    except RunNotFound:
        return False
    return True


# -- what goes -----------------------------------------------------------------------------


def test_a_run_that_ended_before_the_cutoff_goes_with_its_stages_logs_and_history(
    store: Store, clock: FrozenClock,
) -> None:
    old = ended_run(store, outcome=State.FAILED, app="gateway")
    Ledger(store).record_approval(run_id=old, stage_ref="build", decision="approved",
                                  actor="ada")
    Ledger(store).record_artifact(run_id=old, stage_ref="build", app="gateway",
                                  name="gateway", digest=OTHER_IMAGE)
    transitions = len(store.transitions(old))
    clock.advance(91 * DAY)
    recent = ended_run(store)

    report = sweep(store, clock)

    assert report == RetentionReport(runs=1, stages=2, log_chunks=2, transitions=transitions,
                                     approvals=1, artifacts=1)
    assert not exists(store, old)
    assert len(store.read_logs(recent)) == 2


def test_a_run_that_ended_within_the_retention_stays(store: Store,
                                                      clock: FrozenClock) -> None:
    run_id = ended_run(store)
    clock.advance(89 * DAY)

    assert sweep(store, clock) == RetentionReport()
    assert exists(store, run_id)


def test_runs_go_in_batches_and_each_batch_is_heard_once_committed(
    store: Store, clock: FrozenClock,
) -> None:
    runs = [ended_run(store) for _ in range(5)]
    clock.advance(91 * DAY)
    heard: list[list[str]] = []

    report = Retention(store, batch_size=2).delete_expired(
        runs_before=clock(), deliveries_before=clock() - timedelta(days=30),
        on_runs=lambda ids: heard.append(list(ids)))

    assert report.runs == 5
    assert [len(batch) for batch in heard] == [2, 2, 1]
    assert sorted(run for batch in heard for run in batch) == sorted(runs)


def test_a_dry_run_counts_what_would_go_and_deletes_nothing(store: Store,
                                                             clock: FrozenClock) -> None:
    runs = [ended_run(store) for _ in range(3)]
    clock.advance(91 * DAY)

    counted = sweep(store, clock, dry_run=True, batch_size=2)

    assert all(exists(store, run_id) for run_id in runs)
    deleted = sweep(store, clock, batch_size=2)
    assert counted == replace(deleted, dry_run=True)
    assert deleted.runs == 3


# -- what stays ----------------------------------------------------------------------------


def test_a_run_not_yet_ended_stays_however_old(store: Store, clock: FrozenClock) -> None:
    queued = store.create_run("ci", STAGES, trigger="manual").id
    running = store.create_run("ci", STAGES, trigger="manual").id
    store.transition_stage(running, "checkout", State.RUNNING, reason="Started")
    clock.advance(365 * DAY)

    assert sweep(store, clock) == RetentionReport()
    assert exists(store, queued) and exists(store, running)


def test_a_run_a_release_names_stays(store: Store, clock: FrozenClock) -> None:
    released = ended_run(store, app="gateway")
    Ledger(store).record_release(app="gateway", version="1.0", environment="prod",
                                 kind="deploy", digest=IMAGE, actor="ada", why="ship it",
                                 run_id=released)
    gone = ended_run(store, app="gateway")
    clock.advance(91 * DAY)

    report = sweep(store, clock)

    assert (report.runs, report.kept_runs) == (1, 1)
    assert exists(store, released) and not exists(store, gone)
    assert [r.run_id for r in Ledger(store).releases("gateway")] == [released]


def test_the_run_that_built_a_released_image_stays_for_the_lead_time(
    store: Store, clock: FrozenClock,
) -> None:
    built = ended_run(store, app="gateway")
    Ledger(store).record_artifact(run_id=built, stage_ref="build", app="gateway",
                                  name="gateway", digest=IMAGE)
    clock.advance(DAY)
    Ledger(store).record_release(app="gateway", version="1.0", environment="prod",
                                 kind="deploy", digest=IMAGE, actor="ada", why="ship it")
    clock.advance(90 * DAY)

    report = sweep(store, clock)

    assert (report.runs, report.kept_runs) == (0, 1)
    [deployment] = production_deployments(store, "prod")
    assert deployment.commit_at == START  # the ci run's creation: it is still there


def test_a_run_holding_a_deploy_lock_stays(store: Store, clock: FrozenClock) -> None:
    holder = store.create_run("cd", STAGES, trigger="manual", app="gateway").id
    assert DeployLocks(store).acquire("gateway", "prod", holder) is None
    store.cancel_run(holder, reason="Cancelled", message="stopped by hand")
    clock.advance(91 * DAY)

    assert sweep(store, clock).kept_runs == 1
    assert DeployLocks(store).holder("gateway", "prod") == holder


def test_a_run_stays_while_a_run_restarted_from_it_stays(store: Store,
                                                          clock: FrozenClock) -> None:
    source = ended_run(store, outcome=State.FAILED)
    clock.advance(91 * DAY)
    restart = store.create_run("ci", STAGES, trigger="restart", restarted_from=source).id

    report = sweep(store, clock)

    assert (report.runs, report.kept_runs) == (0, 1)
    assert store.get_run(restart).restarted_from == source


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_run_and_its_restarts_go_together_once_all_have_ended(
    store: Store, clock: FrozenClock, dry_run: bool,
) -> None:
    source = ended_run(store, outcome=State.FAILED)
    clock.advance(60)
    again = ended_run(store, outcome=State.FAILED, restarted_from=source)
    clock.advance(60)
    ended_run(store, restarted_from=again)
    clock.advance(91 * DAY)

    report = sweep(store, clock, dry_run=dry_run, batch_size=1)

    assert (report.runs, report.kept_runs) == (3, 0)
    assert exists(store, source) is dry_run


# -- webhook deliveries --------------------------------------------------------------------


def test_deliveries_received_before_their_cutoff_go(store: Store, clock: FrozenClock) -> None:
    ledger = Ledger(store)
    for n in range(3):
        ledger.record_delivery(delivery_id=f"old-{n}", event="push", outcome="ignored")
    clock.advance(29 * DAY)
    ledger.record_delivery(delivery_id="recent", event="push", outcome="ignored")
    clock.advance(2 * DAY)

    assert sweep(store, clock, dry_run=True).deliveries == 3
    assert sweep(store, clock, batch_size=2).deliveries == 3
    assert ledger.delivery("old-0") is None
    assert ledger.delivery("recent") is not None


def test_a_delivery_kept_past_its_run_forgets_the_run_but_still_refuses_a_redelivery(
    store: Store, clock: FrozenClock,
) -> None:
    run_id = ended_run(store)
    clock.advance(89 * DAY)
    Ledger(store).record_delivery(delivery_id="late", event="push", outcome="ignored",
                                  run_id=run_id)
    clock.advance(2 * DAY)

    assert sweep(store, clock).runs == 1

    kept = Ledger(store).delivery("late")
    assert kept is not None and kept.run_id is None
    _, new = Ledger(store).record_delivery(delivery_id="late", event="push",
                                           outcome="ignored")
    assert not new
