"""The read-through cache on plain data, against a fake clock: time only moves when a
test moves it."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from data.cache import EvictionReason, ReadThroughCache
from servicekit.testing import FakeClock


class Recorder:
    """A CacheListener keeping a tally of events."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()

    def hit(self) -> None:
        self.events["hit"] += 1

    def miss(self) -> None:
        self.events["miss"] += 1

    def evicted(self, reason: EvictionReason, count: int) -> None:
        self.events[reason] += count


class Loader:
    """Counts its calls; answers "<name>#<call number>" so a reload is visible."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, name: str) -> Callable[[], str]:
        def load() -> str:
            self.calls += 1
            return f"{name}#{self.calls}"
        return load


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def cache(clock: FakeClock, recorder: Recorder) -> ReadThroughCache[str]:
    return ReadThroughCache(ttl_seconds=10, max_entries=3, clock=clock, listener=recorder)


def test_a_second_read_is_served_from_the_cache(cache: ReadThroughCache[str],
                                                recorder: Recorder) -> None:
    load = Loader()
    assert cache.get_or_load("ann", "page", load("p")) == "p#1"
    assert cache.get_or_load("ann", "page", load("p")) == "p#1"
    assert load.calls == 1
    assert (recorder.events["miss"], recorder.events["hit"]) == (1, 1)


def test_an_entry_is_reloaded_once_its_ttl_has_passed(cache: ReadThroughCache[str],
                                                      clock: FakeClock,
                                                      recorder: Recorder) -> None:
    load = Loader()
    cache.get_or_load("ann", "page", load("p"))
    clock.now += 9.99
    assert cache.get_or_load("ann", "page", load("p")) == "p#1"
    clock.now += 0.01
    assert cache.get_or_load("ann", "page", load("p")) == "p#2"
    assert recorder.events["expired"] == 1


def test_the_least_recently_used_entry_goes_when_the_cache_is_full(
        cache: ReadThroughCache[str], recorder: Recorder) -> None:
    load = Loader()
    for user in ("ann", "bob", "cy"):
        cache.get_or_load(user, "page", load(user))
    cache.get_or_load("ann", "page", load("ann"))  # ann is now the most recently used
    cache.get_or_load("dee", "page", load("dee"))
    assert len(cache) == 3
    assert recorder.events["capacity"] == 1
    calls = load.calls
    cache.get_or_load("ann", "page", load("ann"))
    cache.get_or_load("cy", "page", load("cy"))
    assert load.calls == calls, "ann and cy stayed"
    cache.get_or_load("bob", "page", load("bob"))
    assert load.calls == calls + 1, "bob, the least recently used, was evicted"


def test_invalidating_a_user_drops_all_their_entries_and_nobody_elses(
        cache: ReadThroughCache[str], recorder: Recorder) -> None:
    load = Loader()
    cache.get_or_load("ann", "page", load("ann-page"))
    cache.get_or_load("ann", "item", load("ann-item"))
    cache.get_or_load("bob", "page", load("bob-page"))
    cache.invalidate("ann")
    assert len(cache) == 1
    assert recorder.events["invalidated"] == 2
    assert cache.get_or_load("bob", "page", load("bob-page")) == "bob-page#3"
    assert cache.get_or_load("ann", "page", load("ann-page")) == "ann-page#4"


def test_a_load_that_began_before_an_invalidation_is_not_cached(
        cache: ReadThroughCache[str]) -> None:
    def stale_read() -> str:
        # The database answered; a write commits and invalidates before we store.
        cache.invalidate("ann")
        return "before the write"

    assert cache.get_or_load("ann", "page", stale_read) == "before the write"
    assert cache.get_or_load("ann", "page", lambda: "after the write") == "after the write"


def test_a_failed_load_is_not_cached(cache: ReadThroughCache[str]) -> None:
    def broken() -> str:
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        cache.get_or_load("ann", "page", broken)
    assert cache.get_or_load("ann", "page", lambda: "fresh") == "fresh"
    assert len(cache) == 1


def test_a_ttl_of_zero_caches_nothing(clock: FakeClock) -> None:
    cache: ReadThroughCache[str] = ReadThroughCache(0, 10, clock=clock)
    load = Loader()
    cache.get_or_load("ann", "page", load("p"))
    assert cache.get_or_load("ann", "page", load("p")) == "p#2"
    assert len(cache) == 0


def test_concurrent_readers_and_invalidations_leave_the_cache_consistent(
        clock: FakeClock) -> None:
    cache: ReadThroughCache[int] = ReadThroughCache(10, 50, clock=clock)

    def work(user: str) -> None:
        for i in range(300):
            cache.get_or_load(user, i % 7, lambda i=i: i)  # type: ignore[misc]
            if i % 5 == 0:
                cache.invalidate(user)

    threads = [threading.Thread(target=work, args=(f"u{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 50
    for n in range(8):
        cache.invalidate(f"u{n}")
    assert len(cache) == 0


@pytest.mark.parametrize(("ttl", "entries"), [(-1, 10), (10, 0)])
def test_a_negative_ttl_or_no_room_is_refused(ttl: float, entries: int) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        ReadThroughCache(ttl, entries)
