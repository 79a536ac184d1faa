"""Live updates learn of the store's writes: with PostgreSQL the database notifies the
feed on commit (migration 0011's triggers, :class:`shipyard.store.notify.PostgresListener`)
and the feed reads the store only then; with SQLite it polls. A listener whose connection
the server ends listens again, and what was written meanwhile still arrives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import Store
from shipyard.store.browse import Change, RunBrowser
from shipyard.store.notify import Polling, PostgresListener, change_signal
from tests.support.services import fresh_postgres_database, postgres_base_url
from ui.live import ChangeFeed

pytestmark = pytest.mark.integration

CHAIN = (StageSpec("plan"),)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    yield opened
    opened.close()


class CountingBrowser(RunBrowser):
    """The real browser, counting how often the feed reads new transitions."""

    reads = 0

    def changes_after(self, last_id: int, *, run_id: str | None = None,
                      limit: int = 500) -> list[Change]:
        self.reads += 1
        return super().changes_after(last_id, run_id=run_id, limit=limit)


async def _first_event(store: Store, feed: ChangeFeed, *, seconds: float) -> float:
    """Seconds from a run's creation (committed in another connection) to the feed
    handing its subscriber the change."""
    subscription = feed.subscribe(identity="user:vera", start=(
        await asyncio.to_thread(feed.browser.last_change_id), 0))
    await asyncio.sleep(0.3)  # the feed is idle, waiting
    began = time.monotonic()
    run = await asyncio.to_thread(store.create_run, "cd", CHAIN, trigger="test")
    await asyncio.to_thread(store.transition_stage, run.id, "plan", State.RUNNING,
                            reason="Started")
    while True:
        _, data = await asyncio.wait_for(subscription.queue.get(), seconds)
        if data.get("run_id") == run.id:
            return time.monotonic() - began


async def _listening(signal: object) -> None:
    """Until a PostgreSQL listener listens (its first connection may take a moment)."""
    deadline = time.monotonic() + 15
    while isinstance(signal, PostgresListener) and not signal.listening:
        assert time.monotonic() < deadline, "the listener never listened"
        await asyncio.sleep(0.05)


def test_the_feed_reads_the_store_when_postgresql_says_it_changed_and_sqlite_is_polled(
        store: Store) -> None:
    signal = change_signal(store.engine)
    postgres = store.engine.dialect.name == "postgresql"
    assert isinstance(signal, PostgresListener if postgres else Polling)
    browser = CountingBrowser(store)

    async def scenario() -> tuple[float, int]:
        feed = ChangeFeed(browser, signal=signal, recheck_seconds=1.0)
        tasks = [asyncio.create_task(signal.run()), asyncio.create_task(feed.run())]
        try:
            await _listening(signal)
            latency = await _first_event(store, feed, seconds=5)
            # The run's creation and its stage's start notify once each: let the second
            # wake the feed before counting.
            await asyncio.sleep(0.5)
            before = browser.reads
            await asyncio.sleep(3)  # nothing is written
            return latency, browser.reads - before
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    latency, idle_reads = asyncio.run(scenario())
    print(f"{store.engine.dialect.name}: write → event {latency * 1000:.0f} ms, "
          f"{idle_reads} reads in 3 idle seconds")
    assert latency < 1.0
    if postgres:
        assert idle_reads == 0  # nothing written, nothing read: no polling
    else:
        assert idle_reads >= 8  # every 250 ms


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database: SQLite has no notifications to lose (it is polled)."""
    with fresh_postgres_database(postgres_base_url(request)) as url:
        yield url


def test_a_listener_whose_connection_the_server_ends_listens_again_and_misses_nothing(
        postgres_url: str) -> None:
    store = Store.open(postgres_url)
    signal = change_signal(store.engine)
    assert isinstance(signal, PostgresListener)

    def end_listener_connections() -> int:
        with store.engine.connect() as connection:
            ended = connection.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%'")).scalar()
        return int(ended or 0)

    async def scenario() -> float:
        feed = ChangeFeed(RunBrowser(store), signal=signal, recheck_seconds=1.0)
        tasks = [asyncio.create_task(signal.run()), asyncio.create_task(feed.run())]
        try:
            await _listening(signal)
            await _first_event(store, feed, seconds=5)
            assert signal.connections == 1
            assert await asyncio.to_thread(end_listener_connections) == 1
            # Written while the listener is deaf: read by polling, or on listening again.
            latency = await _first_event(store, feed, seconds=10)
            deadline = time.monotonic() + 15
            while signal.connections < 2:
                assert time.monotonic() < deadline, "the listener never listened again"
                await asyncio.sleep(0.1)
            assert signal.listening
            return latency
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    try:
        latency = asyncio.run(scenario())
    finally:
        store.close()
    assert latency < 5.0
