"""The circuit breaker against a fake clock: time only moves when a test moves it."""

from __future__ import annotations

import pytest
from gateway.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from servicekit.testing import FakeClock

POLICY = BreakerPolicy(consecutive_failures=3, failure_ratio=0.5, window=10,
                       cooldown_seconds=30)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(POLICY, clock)


def outcomes(breaker: CircuitBreaker, *successes: bool) -> None:
    for success in successes:
        breaker.record(breaker.acquire(), success)


def test_a_new_breaker_is_closed_and_lets_requests_through(breaker: CircuitBreaker) -> None:
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allows_request()


def test_consecutive_failures_open_it(breaker: CircuitBreaker) -> None:
    outcomes(breaker, False, False, False)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allows_request()


def test_a_success_between_failures_resets_the_streak(breaker: CircuitBreaker) -> None:
    outcomes(breaker, False, False, True, False, False)
    assert breaker.state is BreakerState.CLOSED


def test_a_failure_ratio_over_a_full_window_opens_it(breaker: CircuitBreaker) -> None:
    outcomes(breaker, *[False, True] * 5)  # never 3 in a row, but half of 10
    assert breaker.state is BreakerState.OPEN


def test_the_ratio_is_not_judged_before_the_window_is_full(breaker: CircuitBreaker) -> None:
    outcomes(breaker, False, True, False, True)
    assert breaker.state is BreakerState.CLOSED


def test_it_turns_half_open_when_the_cooldown_ends(breaker: CircuitBreaker,
                                                   clock: FakeClock) -> None:
    outcomes(breaker, False, False, False)
    states = []
    for step in (29.9, 0.1):
        clock.now += step
        states.append(breaker.state)
    assert states == [BreakerState.OPEN, BreakerState.HALF_OPEN]
    assert breaker.allows_request()


def test_half_open_lets_exactly_one_probe_through(breaker: CircuitBreaker,
                                                  clock: FakeClock) -> None:
    outcomes(breaker, False, False, False)
    clock.now += 30
    permit = breaker.acquire()
    assert permit.probe
    assert not breaker.allows_request()
    with pytest.raises(RuntimeError):
        breaker.acquire()


def test_a_successful_probe_closes_it(breaker: CircuitBreaker, clock: FakeClock) -> None:
    outcomes(breaker, False, False, False)
    clock.now += 30
    breaker.record(breaker.acquire(), success=True)
    assert breaker.state is BreakerState.CLOSED
    outcomes(breaker, False, False)  # the old streak is forgotten
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_probe_opens_it_for_a_fresh_cooldown(breaker: CircuitBreaker,
                                                      clock: FakeClock) -> None:
    outcomes(breaker, False, False, False)
    clock.now += 30
    breaker.record(breaker.acquire(), success=False)
    assert breaker.state is BreakerState.OPEN
    clock.now += 29
    assert breaker.state is BreakerState.OPEN


def test_a_released_probe_frees_the_slot_for_another(breaker: CircuitBreaker,
                                                     clock: FakeClock) -> None:
    outcomes(breaker, False, False, False)
    clock.now += 30
    breaker.release(breaker.acquire())
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.acquire().probe


def test_answers_to_requests_sent_before_it_opened_do_not_close_it(
        breaker: CircuitBreaker, clock: FakeClock) -> None:
    early = breaker.acquire()
    outcomes(breaker, False, False, False)
    breaker.record(early, success=True)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize("fields", [{"consecutive_failures": 0}, {"window": 0},
                                    {"failure_ratio": 0.0}, {"cooldown_seconds": 0.0}])
def test_a_policy_that_could_never_work_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**fields)  # type: ignore[arg-type]
