"""The transition table is the whole policy: every pair of states is checked against it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from shipyard.domain.clock import FrozenClock
from shipyard.domain.states import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    State,
    Transition,
    TransitionForbidden,
    allowed_targets,
    transition,
)

START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# Written out by hand, not derived from the module, so a change to the table has to be
# made twice: once in the code, once here on purpose.
EXPECTED_MOVES: set[tuple[State, State]] = {
    (State.QUEUED, State.RUNNING),
    (State.QUEUED, State.CANCELLED),
    (State.QUEUED, State.SKIPPED),
    (State.RUNNING, State.WAITING),
    (State.RUNNING, State.SUCCEEDED),
    (State.RUNNING, State.FAILED),
    (State.RUNNING, State.CANCELLED),
    (State.RUNNING, State.ROLLED_BACK),
    (State.WAITING, State.RUNNING),
    (State.WAITING, State.FAILED),
    (State.WAITING, State.CANCELLED),
    (State.SUCCEEDED, State.ROLLED_BACK),
    (State.FAILED, State.ROLLED_BACK),
}

ALL_PAIRS = list(itertools.product(State, State))
ALLOWED_PAIRS = [pair for pair in ALL_PAIRS if pair in EXPECTED_MOVES]
FORBIDDEN_PAIRS = [pair for pair in ALL_PAIRS if pair not in EXPECTED_MOVES]


def _pair_id(pair: tuple[State, State]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


def test_the_vocabulary_is_the_eight_documented_statuses() -> None:
    assert [s.value for s in State] == [
        "queued", "running", "waiting", "succeeded", "failed", "cancelled", "skipped",
        "rolled_back",
    ]


def test_the_table_lists_every_state_exactly_once() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(State)


def test_the_table_allows_exactly_the_expected_moves() -> None:
    actual = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert actual == EXPECTED_MOVES


@pytest.mark.parametrize("pair", ALLOWED_PAIRS, ids=_pair_id)
def test_an_allowed_move_returns_a_transition_with_reason_message_and_time(
    pair: tuple[State, State], clock: FrozenClock
) -> None:
    current, target = pair
    clock.advance(90)

    accepted = transition(current, target, reason="TestsFailed", message="3 tests failed",
                          clock=clock)

    assert accepted == Transition(
        from_state=current, to_state=target, reason="TestsFailed", message="3 tests failed",
        at=datetime(2026, 1, 2, 3, 5, 35, tzinfo=UTC),
    )


@pytest.mark.parametrize("pair", FORBIDDEN_PAIRS, ids=_pair_id)
def test_a_forbidden_move_raises_naming_both_states(pair: tuple[State, State],
                                                    clock: FrozenClock) -> None:
    current, target = pair

    with pytest.raises(TransitionForbidden) as raised:
        transition(current, target, reason="Moved", message="", clock=clock,
                   subject="stage 'build'")

    error = raised.value
    assert (error.current, error.target, error.subject) == (current, target, "stage 'build'")
    assert f"stage 'build' cannot go from {current.value} to {target.value}" in str(error)


def test_a_forbidden_move_lists_the_moves_that_are_allowed(clock: FrozenClock) -> None:
    with pytest.raises(TransitionForbidden,
                       match=r"from queued it may go to: cancelled, running, skipped$"):
        transition(State.QUEUED, State.SUCCEEDED, reason="Done", message="", clock=clock)


@pytest.mark.parametrize("final", [State.CANCELLED, State.SKIPPED, State.ROLLED_BACK])
def test_a_move_out_of_a_final_state_says_it_is_final(final: State, clock: FrozenClock) -> None:
    with pytest.raises(TransitionForbidden, match=r"it may go to: nothing \(it is final\)"):
        transition(final, State.RUNNING, reason="Retry", message="", clock=clock)


def test_a_forbidden_move_is_a_value_error_for_callers_that_catch_broadly(
    clock: FrozenClock,
) -> None:
    with pytest.raises(ValueError):
        transition(State.SKIPPED, State.QUEUED, reason="Requeue", message="", clock=clock)


def test_the_subject_defaults_to_stage(clock: FrozenClock) -> None:
    with pytest.raises(TransitionForbidden, match=r"^stage cannot go from failed to running"):
        transition(State.FAILED, State.RUNNING, reason="Retry", message="", clock=clock)


@pytest.mark.parametrize("reason", ["", "testsFailed", "Tests Failed", "Tests-Failed",
                                    "T" + "x" * 64, "TestsFailed\n"])
def test_a_reason_that_is_not_a_camel_case_code_is_refused(reason: str,
                                                          clock: FrozenClock) -> None:
    with pytest.raises(ValueError, match="must be a CamelCase code") as raised:
        transition(State.QUEUED, State.RUNNING, reason=reason, message="", clock=clock)
    assert not isinstance(raised.value, TransitionForbidden)


@pytest.mark.parametrize("reason", ["A", "Started", "Http500", "T" + "x" * 63])
def test_a_camel_case_reason_of_up_to_64_characters_is_accepted(reason: str,
                                                               clock: FrozenClock) -> None:
    assert transition(State.QUEUED, State.RUNNING, reason=reason, message="",
                      clock=clock).reason == reason


def test_the_transition_reads_the_clock_at_the_moment_of_the_move() -> None:
    clock = FrozenClock(START)
    first = transition(State.QUEUED, State.RUNNING, reason="Started", message="", clock=clock)
    clock.advance(2.5)
    second = transition(State.RUNNING, State.SUCCEEDED, reason="Done", message="", clock=clock)

    assert (second.at - first.at).total_seconds() == 2.5


@pytest.mark.parametrize("state", list(State), ids=str)
def test_a_state_is_terminal_exactly_when_only_a_rollback_can_follow(state: State) -> None:
    only_rollback_follows = allowed_targets(state) <= {State.ROLLED_BACK}
    assert state.is_terminal is only_rollback_follows
    assert (state in TERMINAL_STATES) is state.is_terminal


def test_allowed_targets_is_the_table_row() -> None:
    assert allowed_targets(State.WAITING) == {State.RUNNING, State.FAILED, State.CANCELLED}


def test_a_frozen_clock_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        FrozenClock(datetime(2026, 1, 1))


def test_a_frozen_clock_moves_only_when_advanced() -> None:
    clock = FrozenClock(START)
    assert clock() == clock() == START
    assert clock.advance(60) == datetime(2026, 1, 2, 3, 5, 5, tzinfo=UTC)
    assert clock() == datetime(2026, 1, 2, 3, 5, 5, tzinfo=UTC)
