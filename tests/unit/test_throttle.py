"""Failed sign-ins lock a name out for a while, longer each time, never for good."""

from __future__ import annotations

from shipyard.domain.throttle import SignInThrottle


def test_five_failures_in_the_window_lock_the_name_for_a_minute() -> None:
    throttle = SignInThrottle()
    assert [throttle.failed("ada", t) for t in range(4)] == [0, 0, 0, 0]
    assert throttle.retry_after("ada", 4) == 0
    assert throttle.failed("ada", 4) == 60
    assert throttle.retry_after("ADA", 30) == 34  # names count case-insensitively
    assert throttle.retry_after("ada", 64) == 0
    assert throttle.retry_after("bob", 30) == 0


def test_failures_older_than_the_window_do_not_count() -> None:
    throttle = SignInThrottle(max_failures=3, window_seconds=100)
    throttle.failed("ada", 0)
    throttle.failed("ada", 50)
    assert throttle.failed("ada", 120) == 0  # the first one has left the window
    assert throttle.failed("ada", 130) == 60


def test_each_lockout_doubles_up_to_the_cap_and_a_good_sign_in_forgets() -> None:
    throttle = SignInThrottle(max_failures=1, base_lockout_seconds=60,
                              max_lockout_seconds=200)
    assert [throttle.failed("ada", 1000 * i) for i in range(4)] == [60, 120, 200, 200]
    throttle.succeeded("ada")
    assert throttle.retry_after("ada", 3000) == 0
    assert throttle.failed("ada", 4000) == 60
