"""Handing recorded runs to Prefect, on a real store (SQLite and PostgreSQL), with Prefect
played by a fake of the adapter's own ``start_deployment``. The real server takes runs in
test_webhook.py; here each refusal Prefect can give is played on cue."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from pipelines.handover import HandOverFailed, OnRefusal, Reconciler, hand_over
from pipelines.launch import launch
from shipyard.adapters.prefect import PrefectError, PrefectUnavailable
from shipyard.domain.clock import FrozenClock
from shipyard.domain.deployments import FIRST_STAGES
from shipyard.domain.states import State
from shipyard.store import Store

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CI = FIRST_STAGES["ci"]


class FakePrefect:
    """``start_deployment``'s contract: one flow run per idempotency key. ``down`` makes
    it unreachable; ``refuse`` names runs it refuses for themselves."""

    def __init__(self) -> None:
        self.down = False
        self.refuse: set[str] = set()
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []
        self.flow_runs: dict[str, str] = {}

    async def __call__(self, name: str, parameters: dict[str, Any], *,
                      idempotency_key: str | None = None) -> str:
        self.calls.append((name, parameters, idempotency_key))
        if self.down:
            raise PrefectUnavailable("the Prefect server cannot be reached: ConnectError")
        if idempotency_key in self.refuse:
            raise PrefectError("Prefect has no deployment 'ci/ci'")
        assert idempotency_key is not None
        return self.flow_runs.setdefault(idempotency_key, str(uuid.uuid4()))

    def asked_for(self) -> list[str]:
        return [str(key) for _, _, key in self.calls]


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def store(store_url: str, clock: FrozenClock) -> Iterator[Store]:
    opened = Store.open(store_url, clock=clock)
    yield opened
    opened.close()


@pytest.fixture
def prefect() -> FakePrefect:
    return FakePrefect()


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


def reconciler(store: Store, prefect: FakePrefect, clock: FrozenClock, ticks: Ticks,
               **options: Any) -> Reconciler:
    return Reconciler(store, interval_seconds=5, start=prefect, clock=clock, monotonic=ticks,
                      **options)


def queued(store: Store, clock: FrozenClock, n: int = 1) -> list[str]:
    """``n`` ci runs recorded by another process, one second apart, old enough to hand
    over."""
    ids = []
    for i in range(n):
        ids.append(store.create_run("ci", CI, trigger="push", actor="ada",
                                    parameters={"repo": "file:///r.git", "ref": f"{i:040}"}).id)
        clock.advance(1)
    clock.advance(10)
    return ids


def test_a_pass_hands_every_waiting_run_over_once_oldest_first(
        store: Store, prefect: FakePrefect, clock: FrozenClock, ticks: Ticks) -> None:
    first, second = queued(store, clock, 2)

    report = asyncio.run(reconciler(store, prefect, clock, ticks).reconcile_once())

    assert sorted(report.handed_over) == sorted([first, second])
    assert sorted(prefect.asked_for()) == sorted([first, second])
    name, parameters, _ = prefect.calls[0]
    assert name == "ci/ci"
    run = store.get_run(first)
    assert parameters == {"repo": "file:///r.git", "ref": "0" * 40, "run_id": first,
                          "trigger": "push", "actor": "ada"}
    assert run.prefect_flow_run_id == prefect.flow_runs[first]
    assert store.awaiting_hand_over() == []


def test_a_pass_stops_when_prefect_is_down_and_every_waiting_run_says_why(
        store: Store, prefect: FakePrefect, clock: FrozenClock, ticks: Ticks) -> None:
    runs = queued(store, clock, 20)
    prefect.down = True

    report = asyncio.run(reconciler(store, prefect, clock, ticks, concurrency=2)
                         .reconcile_once())

    assert report.unavailable is not None and report.handed_over == []
    assert len(prefect.calls) <= 2  # the ones already asking when the first failed
    for run_id in runs:
        run = store.get_run(run_id)
        assert (run.state, run.reason) == (State.QUEUED, "AwaitingPrefect")
        assert "cannot be reached" in run.message


def test_while_prefect_is_down_runs_beyond_one_pass_say_why_too(
        store: Store, prefect: FakePrefect, clock: FrozenClock, ticks: Ticks) -> None:
    runs = queued(store, clock, 12)
    prefect.down = True

    passes = reconciler(store, prefect, clock, ticks, batch=5, concurrency=1)
    report = asyncio.run(passes.reconcile_once())
    assert report.unavailable is not None
    assert [store.get_run(r).reason for r in runs] == ["AwaitingPrefect"] * 12
    ticks.now += 60
    asyncio.run(passes.reconcile_once())
    said = [t for t in store.transitions(runs[-1]) if t.reason == "HandOverFailed"]
    assert len(said) == 1  # once, not once per pass


def test_after_prefect_was_down_one_run_asks_before_the_others(
        store: Store, prefect: FakePrefect, clock: FrozenClock, ticks: Ticks) -> None:
    runs = queued(store, clock, 5)
    prefect.down = True
    reconcile = reconciler(store, prefect, clock, ticks)
    asyncio.run(reconcile.reconcile_once())
    prefect.calls.clear()

    asyncio.run(reconcile.reconcile_once())
    assert len(prefect.calls) == 1, "still down: only one run asked"

    prefect.down = False
    prefect.calls.clear()
    report = asyncio.run(reconcile.reconcile_once())
    assert sorted(report.handed_over) == sorted(runs)
    assert [t.reason for t in store.transitions(runs[0])] == [
        "Created", "HandOverFailed", "HandedOver"]


def test_a_run_prefect_refuses_backs_off_without_holding_up_the_others(
        store: Store, prefect: FakePrefect, clock: FrozenClock, ticks: Ticks) -> None:
    refused, fine = queued(store, clock, 2)
    prefect.refuse = {refused}
    reconcile = reconciler(store, prefect, clock, ticks)

    report = asyncio.run(reconcile.reconcile_once())
    assert report.handed_over == [fine] and list(report.refused) == [refused]
    assert store.get_run(refused).reason == "AwaitingPrefect"

    prefect.calls.clear()
    asyncio.run(reconcile.reconcile_once())
    assert prefect.calls == [], "backing off"

    ticks.now += 10  # the first backoff: twice the interval
    prefect.refuse.clear()
    assert asyncio.run(reconcile.reconcile_once()).handed_over == [refused]


def test_runs_another_process_just_recorded_are_left_to_it_but_woken_ones_are_not(
        store: Store, prefect: FakePrefect, clock: FrozenClock, ticks: Ticks) -> None:
    theirs = store.create_run("ci", CI, trigger="cli").id
    ours = store.create_run("ci", CI, trigger="push").id
    reconcile = reconciler(store, prefect, clock, ticks)
    reconcile.wake(ours)

    assert asyncio.run(reconcile.reconcile_once()).handed_over == [ours]

    clock.advance(6)
    assert asyncio.run(reconcile.reconcile_once()).handed_over == [theirs]


def test_the_same_run_handed_over_twice_makes_one_flow_run(
        store: Store, prefect: FakePrefect, clock: FrozenClock, ticks: Ticks) -> None:
    [run_id] = queued(store, clock)
    record = store.get_run(run_id)
    first = asyncio.run(hand_over(store, record, on_refusal=OnRefusal.KEEP_QUEUED,
                                  start=prefect))
    second = asyncio.run(hand_over(store, record, on_refusal=OnRefusal.KEEP_QUEUED,
                                   start=prefect))
    assert first.prefect_flow_run_id == second.prefect_flow_run_id
    assert prefect.asked_for() == [run_id, run_id]


def test_launch_cancels_a_run_prefect_cannot_take_when_told_to(
        store: Store, prefect: FakePrefect) -> None:
    prefect.down = True
    with pytest.raises(HandOverFailed, match="`shipyard up` does both") as raised:
        asyncio.run(launch(store, "ci", {"repo": "/r", "ref": "main"}, trigger="cli",
                           start=prefect))
    run = store.get_run(raised.value.run_id)
    assert (run.state, run.reason) == (State.CANCELLED, "HandOverFailed")
    assert raised.value.unavailable


def test_launch_keeps_a_run_prefect_cannot_take_queued_when_told_to(
        store: Store, prefect: FakePrefect) -> None:
    prefect.down = True
    with pytest.raises(HandOverFailed, match="stays queued") as raised:
        asyncio.run(launch(store, "ci", {"repo": "/r", "ref": "main"}, trigger="manual",
                           on_refusal=OnRefusal.KEEP_QUEUED, start=prefect))
    run = store.get_run(raised.value.run_id)
    assert (run.state, run.reason) == (State.QUEUED, "AwaitingPrefect")
    assert [r.id for r in store.awaiting_hand_over()] == [run.id]
