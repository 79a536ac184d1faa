"""The local cluster of `shipyard up` with KWOK nodes: a real API server, controller
manager and scheduler from the multi-call binary; simulated nodes and pods."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from shipyard.adapters.kube import Kube

pytestmark = pytest.mark.integration


def deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "shipyard"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     # Simulated pods: only the KWOK node takes them.
                     "nodeSelector": {"type": "kwok"},
                     "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists",
                                      "effect": "NoSchedule"}],
                     "containers": [{"name": name,
                                     "image": "shipyard/does-not-run-under-kwok:1"}]}}},
    }


@pytest.fixture
def namespace(kwok_cluster: Path) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    Kube.from_kubeconfig(kwok_cluster).create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def test_the_cluster_reports_its_kubernetes_version(kwok_cluster: Path):
    kube = Kube.from_kubeconfig(kwok_cluster)
    assert kube.ready()
    assert kube.version() == "v1.34.4"


def test_a_three_replica_deployment_rolls_out(kwok_cluster: Path, namespace: str):
    kube = Kube.from_kubeconfig(kwok_cluster)
    kube.create(deployment("web", namespace, 3))
    status = kube.wait_for_rollout(namespace, "web", timeout_seconds=120)
    assert status.done and "successfully rolled out" in status.message
    pods = kube.pods(namespace, "app.kubernetes.io/name=web")
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Running" and p["status"].get("podIP") for p in pods)


def test_a_deleted_pod_is_replaced_by_its_replicaset(kwok_cluster: Path, namespace: str):
    kube = Kube.from_kubeconfig(kwok_cluster)
    kube.create(deployment("web", namespace, 3))
    kube.wait_for_rollout(namespace, "web", timeout_seconds=120)
    before = {p["metadata"]["name"] for p in kube.pods(namespace, "app.kubernetes.io/name=web")}
    victim = sorted(before)[0]
    kube.delete_pod(namespace, victim)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = {p["metadata"]["name"] for p in kube.pods(namespace, "app.kubernetes.io/name=web")
               if p["status"].get("phase") == "Running"
               and not p["metadata"].get("deletionTimestamp")}
        if victim not in now and len(now) == 3:
            break
        time.sleep(0.5)
    assert victim not in now and len(now) == 3
    assert len(now - before) == 1  # exactly one new pod


def test_a_200_replica_deployment_rolls_out(kwok_cluster: Path, namespace: str):
    kube = Kube.from_kubeconfig(kwok_cluster)
    kube.create(deployment("wide", namespace, 200))
    status = kube.wait_for_rollout(namespace, "wide", timeout_seconds=300)
    assert status.done
    assert kube.deployment(namespace, "wide")["status"]["availableReplicas"] == 200
