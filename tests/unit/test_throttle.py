"""Failed sign-ins lock a name, or an address, out for a while, longer each time, never for
good; the counts forget quiet keys and never hold more than their capacity. Time is passed
in, so each test sets the clock it needs."""

from __future__ import annotations

from shipyard.domain.client_address import client_key
from shipyard.domain.throttle import FailureCounter, Lockout, SignInThrottle


def test_five_failures_in_the_window_lock_the_name_for_a_minute() -> None:
    throttle = SignInThrottle()
    assert [throttle.failed("ada", "10.0.0.1", t) for t in range(4)] == [None] * 4
    assert throttle.locked("ada", "10.0.0.1", 4) is None
    assert throttle.failed("ada", "10.0.0.1", 4) == Lockout(60, "name")
    assert throttle.locked("ADA", "10.0.0.9", 30) == Lockout(34, "name")  # any case
    assert throttle.locked("ada", "10.0.0.1", 64) is None
    assert throttle.locked("bob", "10.0.0.1", 30) is None


def test_failures_older_than_the_window_do_not_count() -> None:
    counter = FailureCounter(max_failures=3, window_seconds=100)
    counter.failed("ada", 0)
    counter.failed("ada", 50)
    assert counter.failed("ada", 120) == 0  # the first one has left the window
    assert counter.failed("ada", 130) == 60


def test_each_lockout_doubles_up_to_the_cap_and_a_good_sign_in_forgets_the_name() -> None:
    throttle = SignInThrottle(by_name=FailureCounter(max_failures=1, base_lockout_seconds=60,
                                                     max_lockout_seconds=200))
    assert [throttle.failed("ada", f"10.0.0.{i}", 300 * i) for i in range(4)] == [
        Lockout(60, "name"), Lockout(120, "name"), Lockout(200, "name"), Lockout(200, "name")]
    throttle.succeeded("ada")
    assert throttle.locked("ada", "10.0.0.1", 1000) is None
    assert throttle.failed("ada", "10.0.0.1", 1000) == Lockout(60, "name")


def test_one_address_spraying_many_names_is_locked_out_by_its_address() -> None:
    throttle = SignInThrottle()
    lockouts = [throttle.failed(f"user{i}", "203.0.113.7", i) for i in range(20)]
    assert lockouts[:19] == [None] * 19
    assert lockouts[19] == Lockout(60, "address")
    # Locked for every name, even one never tried, and even with the right password:
    # the caller asks before checking it.
    assert throttle.locked("carol", "203.0.113.7", 30) == Lockout(49, "address")
    assert throttle.locked("carol", "203.0.113.8", 30) is None


def test_a_good_sign_in_does_not_clear_its_addresses_count() -> None:
    throttle = SignInThrottle()
    for i in range(19):
        throttle.failed(f"user{i}", "203.0.113.7", i)
    throttle.succeeded("mallory")  # the guesser's own account
    assert throttle.failed("user19", "203.0.113.7", 19) == Lockout(60, "address")


def test_ipv6_addresses_count_by_their_64_and_mapped_ipv4_as_ipv4() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key(None) == "unknown"


def test_keys_quiet_for_a_window_are_forgotten() -> None:
    counter = FailureCounter(window_seconds=100, max_lockout_seconds=60)
    counter.failed("old", 0)
    counter.failed("recent", 50)
    counter.failed("new", 120)  # "old" has been quiet for a window: gone
    assert len(counter) == 2
    assert counter.failed("new", 250) == 0  # so is "recent" now
    assert len(counter) == 1


def test_a_locked_key_is_kept_until_its_lockout_and_a_window_after_it_are_over() -> None:
    counter = FailureCounter(max_failures=1, window_seconds=100, base_lockout_seconds=100,
                             max_lockout_seconds=100)
    assert counter.failed("ada", 0) == 100
    assert counter.retry_after("ada", 50) == 50
    counter.failed("other", 150)  # ada quiet for 50 s since its lockout ended: kept
    assert len(counter) == 2
    counter.failed("other", 201)  # 101 s: forgotten
    assert len(counter) == 1
    assert counter.retry_after("ada", 201) == 0


def test_memory_is_bounded_and_the_least_recently_failed_key_goes_first() -> None:
    counter = FailureCounter(max_failures=3, capacity=100)
    counter.failed("target", 0)
    counter.failed("target", 1)
    for i in range(5000):  # a flood of made-up names, all within the window
        counter.failed(f"made-up-{i}", 2 + i * 0.01)
        if i % 50 == 0:
            counter.failed("target", 2 + i * 0.01)  # the attacked name stays fresh
    assert len(counter) == 100
    assert counter.retry_after("target", 60) > 0  # still counted: it was locked
