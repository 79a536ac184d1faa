"""The live feed's streams hold slots: a refusal past the limit, and a slot freed whichever
way the end of its stream is noticed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.domain.stream_slots import StreamSlots, TooManyStreams
from shipyard.store import Store
from shipyard.store.browse import RunBrowser
from ui.live import ChangeFeed, sse_stream


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[RunBrowser]:
    store = Store.open(f"sqlite:///{tmp_path / 'shipyard.db'}")
    yield RunBrowser(store)
    store.close()


def feed_of(browser: RunBrowser, per_identity: int = 2) -> ChangeFeed:
    return ChangeFeed(browser, slots=StreamSlots(per_identity), interval_seconds=0.01,
                      recheck_seconds=0.01)


async def still_here() -> bool:
    return False


async def gone() -> bool:
    return True


async def broken() -> bool:
    raise RuntimeError("the request's receive channel is closed")


def test_an_identity_past_its_streams_is_refused_and_a_closed_one_makes_room(
        browser: RunBrowser) -> None:
    async def scenario() -> None:
        feed = feed_of(browser)
        first = feed.subscribe(identity="user:vera")
        feed.subscribe(identity="user:vera")
        with pytest.raises(TooManyStreams):
            feed.subscribe(identity="user:vera")
        feed.subscribe(identity="user:dave")
        feed.unsubscribe(first)
        feed.unsubscribe(first)  # noticed twice: one slot freed
        feed.subscribe(identity="user:vera")
        with pytest.raises(TooManyStreams):
            feed.subscribe(identity="user:vera")

    asyncio.run(scenario())


def test_a_stream_cancelled_by_its_clients_departure_frees_its_slot(
        browser: RunBrowser) -> None:
    async def scenario() -> None:
        feed = feed_of(browser, per_identity=1)
        subscription = feed.subscribe(identity="user:vera")
        body = sse_stream(feed, subscription, still_here)
        assert await anext(body) == "retry: 2000\n\n"
        waiting = asyncio.ensure_future(anext(body))
        await asyncio.sleep(0.01)
        waiting.cancel()  # what the server does when the client hangs up
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert feed.slots.held("user:vera") == 0

    asyncio.run(scenario())


def test_a_departure_the_stream_missed_is_found_by_the_feeds_check(
        browser: RunBrowser) -> None:
    async def scenario() -> None:
        feed = feed_of(browser, per_identity=1)
        feed.subscribe(identity="user:vera", client_left=gone)  # its body never ran
        staying = feed.subscribe(identity="user:dave", client_left=still_here)
        running = asyncio.create_task(feed.run())
        try:
            async with asyncio.timeout(5):
                while feed.slots.held("user:vera"):
                    await asyncio.sleep(0.01)
        finally:
            running.cancel()
        assert feed.slots.held("user:dave") == 1 and not staying.ended
        feed.subscribe(identity="user:vera")

    asyncio.run(scenario())


def test_a_stream_whose_request_cannot_say_is_dropped_and_the_others_are_still_checked(
        browser: RunBrowser) -> None:
    async def scenario() -> None:
        feed = feed_of(browser, per_identity=1)
        feed.subscribe(identity="user:vera", client_left=broken)
        feed.subscribe(identity="user:dave", client_left=gone)
        running = asyncio.create_task(feed.run())
        try:
            async with asyncio.timeout(5):
                while len(feed.slots):
                    await asyncio.sleep(0.01)
        finally:
            running.cancel()

    asyncio.run(scenario())
