"""One deploy per app and environment at a time, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import DeployLocks, Store

pytestmark = pytest.mark.integration


@pytest.fixture
def store(store_url: str):
    opened = Store.open(store_url)
    yield opened
    opened.close()


def new_run(store: Store) -> str:
    return store.create_run("release", [StageSpec("ci")], trigger="manual").id


def test_a_second_run_is_told_who_holds_the_lock(store):
    locks = DeployLocks(store)
    first, second = new_run(store), new_run(store)
    assert locks.acquire("gateway", "prod", first) is None
    assert locks.acquire("gateway", "prod", second) == first
    assert locks.acquire("gateway", "prod", first) is None  # it holds it already
    # Another app, or another environment, is another lock.
    assert locks.acquire("gateway", "staging", second) is None
    assert locks.acquire("data", "prod", second) is None


def test_a_released_lock_is_free_and_only_its_holder_releases_it(store):
    locks = DeployLocks(store)
    first, second = new_run(store), new_run(store)
    locks.acquire("gateway", "prod", first)
    locks.release("gateway", "prod", second)  # not its lock: nothing happens
    assert locks.holder("gateway", "prod") == first
    locks.release("gateway", "prod", first)
    assert locks.holder("gateway", "prod") is None
    assert locks.acquire("gateway", "prod", second) is None


def test_the_lock_of_a_run_that_ended_is_taken_over(store):
    locks = DeployLocks(store)
    crashed, next_run = new_run(store), new_run(store)
    locks.acquire("gateway", "prod", crashed)
    store.transition_run(crashed, State.CANCELLED, reason="FlowCancelled", message="gone")
    assert locks.acquire("gateway", "prod", next_run) is None
    assert locks.holder("gateway", "prod") == next_run


def test_of_runs_racing_for_one_lock_exactly_one_wins(store):
    locks = DeployLocks(store)
    runs = [new_run(store) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda r: locks.acquire("data", "prod", r), runs))
    winners = [run for run, holder in zip(runs, answers, strict=True) if holder is None]
    assert len(winners) == 1
    assert all(holder == winners[0] for holder in answers if holder is not None)
