"""The store's side of the run sweeper: which runs it shows the sweeper, the flow's
heartbeat, and settling a run whose process died (stages, run, locks in one
transaction). SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shipyard.domain.clock import FrozenClock
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import DeployLocks, Store

START = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
CHAIN = (StageSpec("plan"), StageSpec("deploy", ("plan",)), StageSpec("verify", ("deploy",)))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def store(store_url: str, clock: FrozenClock) -> Iterator[Store]:
    opened = Store.open(store_url, clock=clock)
    yield opened
    opened.close()


def started(store: Store, flow_run: str | None = "f-1") -> str:
    run = store.create_run("cd", CHAIN, trigger="manual", app="gateway",
                           prefect_flow_run_id=flow_run)
    store.transition_stage(run.id, "plan", State.RUNNING, reason="Started")
    store.transition_stage(run.id, "plan", State.SUCCEEDED, reason="Succeeded")
    store.transition_stage(run.id, "deploy", State.RUNNING, reason="Started")
    return run.id


def test_the_sweeper_sees_runs_a_process_should_be_moving(store: Store,
                                                         clock: FrozenClock) -> None:
    moving = started(store, "f-1")
    clock.advance(1)  # oldest first
    taken = store.create_run("ci", CHAIN, trigger="manual", prefect_flow_run_id="f-2").id
    waiting_for_prefect = store.create_run("ci", CHAIN, trigger="manual").id
    ended = started(store, "f-3")
    store.finish_run(ended)
    seen = [r.id for r in store.unfinished_runs()]
    assert seen == [moving, taken]
    assert waiting_for_prefect not in seen and ended not in seen


def test_a_heartbeat_is_kept_on_unfinished_runs_only(store: Store,
                                                     clock: FrozenClock) -> None:
    run_id = started(store)
    assert store.get_run(run_id).heartbeat_at is None
    clock.advance(7)
    store.beat(run_id)
    assert store.get_run(run_id).heartbeat_at == START + timedelta(seconds=7)
    store.finish_run(run_id)
    clock.advance(7)
    store.beat(run_id)  # a late beat of a settled run changes nothing
    assert store.get_run(run_id).heartbeat_at == START + timedelta(seconds=7)


def test_an_abandoned_run_fails_with_the_evidence_and_gives_its_locks_back(
        store: Store) -> None:
    run_id = started(store)
    locks = DeployLocks(store)
    assert locks.acquire("gateway", "prod", run_id) is None
    settled = store.abandon_run(run_id, evidence="its flow run f-1 ended CRASHED")
    assert settled is not None
    assert (settled.state, settled.reason) == (State.FAILED, "Abandoned")
    assert settled.message == "its flow run f-1 ended CRASHED"
    stages = {s.ref: (s.state, s.reason) for s in settled.stages}
    assert stages == {"plan": (State.SUCCEEDED, "Succeeded"),
                      "deploy": (State.FAILED, "Abandoned"),
                      "verify": (State.SKIPPED, "Abandoned")}
    assert "its flow run f-1 ended CRASHED" in settled.stage("deploy").message
    assert locks.holder("gateway", "prod") is None
    assert store.abandon_run(run_id, evidence="again") is None  # settled once
    assert store.get_run(run_id).message == "its flow run f-1 ended CRASHED"


def test_a_run_waiting_for_a_judgment_can_be_abandoned(store: Store) -> None:
    run_id = started(store)
    store.transition_stage(run_id, "deploy", State.SUCCEEDED, reason="Succeeded")
    store.transition_stage(run_id, "verify", State.RUNNING, reason="Started")
    store.transition_stage(run_id, "verify", State.WAITING, reason="AwaitingJudgment")
    assert store.get_run(run_id).state is State.WAITING
    settled = store.abandon_run(run_id, evidence="Prefect no longer has its flow run")
    assert settled is not None and settled.state is State.FAILED
    assert settled.stage("verify").reason == "Abandoned"
