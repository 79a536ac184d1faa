"""An environment's health and traffic split, judged from plain Deployment objects."""

from __future__ import annotations

from typing import Any

from shipyard.domain.environments import judge_health, traffic_shares, workload_of


def deployment(name: str, *, slot: str = "", track: str = "stable", version: str = "1.0",
               replicas: int = 2, ready: int = 2, generation: int = 1, observed: int = 1,
               deadline_exceeded: bool = False) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "gateway", "app.kubernetes.io/version": version,
              "shipyard.dev/track": track}
    if slot:
        labels["shipyard.dev/slot"] = slot
    conditions = [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}] \
        if deadline_exceeded else []
    return {"metadata": {"name": name, "generation": generation},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": labels}}},
            "status": {"observedGeneration": observed, "replicas": replicas,
                       "updatedReplicas": ready, "availableReplicas": ready,
                       "readyReplicas": ready, "conditions": conditions}}


def test_red_black_sends_everything_to_the_selected_slot() -> None:
    workloads = [workload_of(deployment("gateway-v007", slot="v007", version="7")),
                 workload_of(deployment("gateway-v006", slot="v006", version="6"))]
    selector = {"app.kubernetes.io/name": "gateway", "shipyard.dev/slot": "v007"}
    assert traffic_shares(selector, workloads) == {"gateway-v007": 1.0}
    assert workloads[0].version == "7" and workloads[0].slot == "v007"


def test_a_plain_selector_splits_by_ready_pods_and_skips_pods_not_ready() -> None:
    workloads = [workload_of(deployment("a", ready=3, replicas=3)),
                 workload_of(deployment("b", ready=1, replicas=2)),
                 workload_of(deployment("c", ready=0, replicas=1))]
    shares = traffic_shares({"app.kubernetes.io/name": "gateway"}, workloads)
    assert shares == {"a": 0.75, "b": 0.25}
    assert traffic_shares({}, workloads) == {}
    assert traffic_shares({"app.kubernetes.io/name": "other"}, workloads) == {}


def test_health_follows_kubectls_rollout_rules() -> None:
    healthy = workload_of(deployment("gateway-v007"))
    assert judge_health("gateway-v007", [healthy]) == ("healthy", "2/2 ready")
    waiting = workload_of(deployment("gateway-v008", ready=1))
    state, message = judge_health("gateway-v008", [waiting])
    assert state == "progressing" and "1 out of 2 new replicas" in message
    stuck = workload_of(deployment("gateway-v009", ready=0, deadline_exceeded=True))
    assert judge_health("gateway-v009", [stuck])[0] == "failed"
    unobserved = workload_of(deployment("gateway-v010", generation=2, observed=1))
    assert judge_health("gateway-v010", [unobserved])[0] == "progressing"
    assert judge_health("gateway-v011", [healthy]) == (
        "missing", "deployment 'gateway-v011' is not in the cluster")
    assert judge_health(None, []) == ("missing", "nothing released here")
