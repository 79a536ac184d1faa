"""The UI's short cache: reads within the time to live are served kept, one read per key
is in flight however many ask, and a failed read is not kept. A fake reader counts the
reads; the clock is moved by hand."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from ui.ttl_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Reader:
    """Answers ``value`` and counts the calls; ``fail`` makes the next call raise."""

    def __init__(self, value: str = "listing") -> None:
        self.value = value
        self.calls = 0
        self.fail: Exception | None = None

    def __call__(self) -> str:
        self.calls += 1
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        return f"{self.value} {self.calls}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_read_within_the_time_to_live_makes_no_call(clock: Clock) -> None:
    cache: TtlCache[str, str] = TtlCache(5, clock=clock)
    reader = Reader()
    assert cache.get("prod", reader) == "listing 1"
    clock.now += 4.9
    assert cache.get("prod", reader) == "listing 1"
    assert reader.calls == 1


def test_once_expired_a_read_makes_one_call(clock: Clock) -> None:
    cache: TtlCache[str, str] = TtlCache(5, clock=clock)
    reader = Reader()
    cache.get("prod", reader)
    clock.now += 5
    assert [cache.get("prod", reader) for _ in range(3)] == ["listing 2"] * 3
    assert reader.calls == 2


def test_keys_are_kept_apart(clock: Clock) -> None:
    cache: TtlCache[tuple[str, str], str] = TtlCache(5, clock=clock)
    deployments, services = Reader("deployments"), Reader("services")
    assert cache.get(("prod", "deployments"), deployments) == "deployments 1"
    assert cache.get(("prod", "services"), services) == "services 1"
    assert cache.get(("staging", "deployments"), deployments) == "deployments 2"


def test_an_error_is_raised_and_not_kept(clock: Clock) -> None:
    cache: TtlCache[str, str] = TtlCache(5, clock=clock)
    reader = Reader()
    reader.fail = ConnectionError("the API server hung up")
    with pytest.raises(ConnectionError, match="hung up"):
        cache.get("prod", reader)
    assert cache.get("prod", reader) == "listing 2"  # read again at once
    assert reader.calls == 2


def test_time_to_live_0_reads_every_time(clock: Clock) -> None:
    cache: TtlCache[str, str] = TtlCache(0, clock=clock)
    reader = Reader()
    assert [cache.get("prod", reader) for _ in range(3)] == [
        "listing 1", "listing 2", "listing 3"]
    assert len(cache) == 0


def test_expired_values_are_forgotten_when_another_is_kept(clock: Clock) -> None:
    cache: TtlCache[str, str] = TtlCache(5, clock=clock)
    cache.get("staging", Reader())
    clock.now += 6
    cache.get("prod", Reader())
    assert len(cache) == 1


def test_a_negative_time_to_live_is_refused() -> None:
    with pytest.raises(ValueError, match="0 \\(off\\) or more"):
        TtlCache(-1)


def concurrently(cache: TtlCache[str, str], read: Callable[[], str],
                 count: int) -> tuple[list[threading.Thread], list[object]]:
    """``count`` threads asking for one key at once; what each got (a value or an error)."""
    got: list[object] = []
    asking = threading.Barrier(count + 1)

    def ask() -> None:
        asking.wait()
        try:
            got.append(cache.get("prod", read))
        except Exception as err:  # the test compares what each got
            got.append(err)

    threads = [threading.Thread(target=ask) for _ in range(count)]
    for thread in threads:
        thread.start()
    asking.wait()
    return threads, got


def test_concurrent_misses_wait_for_one_read(clock: Clock) -> None:
    cache: TtlCache[str, str] = TtlCache(5, clock=clock)
    reader = Reader()
    release = threading.Event()

    def slow_read() -> str:
        release.wait(5)
        # Kept past its time already: a caller that had not joined this read would read
        # again, so one call in all means every caller waited for this one.
        clock.now += 10
        return reader()

    threads, got = concurrently(cache, slow_read, 8)
    threading.Event().wait(0.2)  # every thread has asked by now
    release.set()
    for thread in threads:
        thread.join(5)
    assert got == ["listing 1"] * 8
    assert reader.calls == 1


def test_callers_waiting_for_a_failed_read_get_its_error_and_the_next_reads_again(
        clock: Clock) -> None:
    cache: TtlCache[str, str] = TtlCache(5, clock=clock)
    reader = Reader()
    reader.fail = TimeoutError("no answer within 10 s")
    release = threading.Event()

    def slow_read() -> str:
        release.wait(5)
        return reader()

    threads, got = concurrently(cache, slow_read, 4)
    threading.Event().wait(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert [str(e) for e in got] == ["no answer within 10 s"] * 4
    assert cache.get("prod", reader) == "listing 2"
