"""kubectl's rollout rules over plain Deployment data."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.domain.rollout import deployment_rollout_status, scaled_and_rolled_out


def deployment(generation: int = 2, desired: int = 3, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": desired}, "status": status}


@pytest.mark.parametrize(
    ("data", "done", "failed", "message"),
    [
        (deployment(observedGeneration=1), False, False, "spec update to be observed"),
        (deployment(observedGeneration=2, updatedReplicas=1, replicas=3),
         False, False, "1 out of 3 new replicas have been updated"),
        (deployment(observedGeneration=2, updatedReplicas=3, replicas=5),
         False, False, "2 old replicas are pending termination"),
        (deployment(observedGeneration=2, updatedReplicas=3, replicas=3, availableReplicas=2),
         False, False, "2 of 3 updated replicas are available"),
        (deployment(observedGeneration=2, updatedReplicas=3, replicas=3, availableReplicas=3),
         True, False, "successfully rolled out"),
        (deployment(observedGeneration=2, updatedReplicas=1, replicas=3, conditions=[
            {"type": "Progressing", "status": "False",
             "reason": "ProgressDeadlineExceeded"}]),
         False, True, "exceeded its progress deadline"),
        (deployment(desired=0, observedGeneration=2), True, False, "successfully rolled out"),
    ],
)
def test_rollout_status_follows_kubectl(data, done, failed, message):
    status = deployment_rollout_status(data)
    assert (status.done, status.failed) == (done, failed)
    assert message in status.message


def test_a_deployment_without_status_is_waiting_for_its_spec():
    status = deployment_rollout_status({"metadata": {"name": "new", "generation": 1},
                                        "spec": {"replicas": 2}})
    assert not status.done and "spec update to be observed" in status.message


@pytest.mark.parametrize(
    ("data", "warm"),
    [
        (deployment(observedGeneration=2, updatedReplicas=3, replicas=3, availableReplicas=3),
         True),
        (deployment(observedGeneration=2, updatedReplicas=3, replicas=3, availableReplicas=2),
         False),
        (deployment(desired=0, observedGeneration=2), False),
        (deployment(observedGeneration=1, updatedReplicas=3, replicas=3, availableReplicas=3),
         False),
        (deployment(observedGeneration=2, updatedReplicas=1, replicas=3, availableReplicas=3),
         False),
    ],
    ids=["all available", "one short", "scaled to zero", "new spec not yet observed",
         "rollout under way"],
)
def test_a_version_is_warm_when_it_asks_for_replicas_and_kubectl_calls_it_rolled_out(
        data, warm):
    assert scaled_and_rolled_out(data) is warm
