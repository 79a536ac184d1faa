"""The retry policy and what an outcome means for the breaker."""

from __future__ import annotations

import pytest
from gateway.outcome import Outcome, RetryPolicy

POLICY = RetryPolicy(max_retries=1)
REFUSED = Outcome(failure="connect_error")


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "get"])
def test_idempotent_methods_are_retried_after_a_refused_connection(method: str) -> None:
    assert POLICY.should_retry(method, REFUSED, attempts=1)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_post_and_patch_are_never_retried(method: str) -> None:
    assert not POLICY.should_retry(method, REFUSED, attempts=1)
    assert not POLICY.should_retry(method, Outcome(status=503), attempts=1)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_statuses_are_retried(status: int) -> None:
    assert POLICY.should_retry("GET", Outcome(status=status), attempts=1)


@pytest.mark.parametrize("outcome", [Outcome(status=200), Outcome(status=404),
                                     Outcome(status=500), Outcome(failure="timeout"),
                                     Outcome(failure="protocol_error")])
def test_other_outcomes_are_not_retried(outcome: Outcome) -> None:
    assert not POLICY.should_retry("GET", outcome, attempts=1)


def test_retries_are_bounded() -> None:
    assert not POLICY.should_retry("GET", REFUSED, attempts=2)
    assert RetryPolicy(max_retries=2).should_retry("GET", REFUSED, attempts=2)
    assert not RetryPolicy(max_retries=0).should_retry("GET", REFUSED, attempts=1)


@pytest.mark.parametrize(("outcome", "failed"), [
    (Outcome(status=200), False), (Outcome(status=404), False), (Outcome(status=500), True),
    (Outcome(status=503), True), (Outcome(failure="connect_error"), True),
    (Outcome(failure="timeout"), True), (Outcome(failure="rejected"), False),
])
def test_only_server_side_trouble_counts_against_the_instance(outcome: Outcome,
                                                              failed: bool) -> None:
    assert outcome.instance_failed is failed


def test_an_outcome_is_a_status_or_a_failure() -> None:
    with pytest.raises(ValueError):
        Outcome()
    assert Outcome(failure="timeout").label == "timeout"
    assert Outcome(status=204).label == "204"
