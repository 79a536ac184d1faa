"""The local cluster of `shipyard up` with KWOK nodes: a real API server, controller
manager and scheduler from the multi-call binary; simulated nodes and pods."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.adapters.pod_killer import PodKiller

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
def namespace(kwok_cluster: Path) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (a reused cluster would otherwise
    fill its node with pods of earlier runs)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    admin = KubeBootstrap.from_kubeconfig(kwok_cluster)
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    admin.delete_namespace(name)


def test_the_cluster_reports_its_kubernetes_version(kwok_cluster: Path):
    admin = KubeBootstrap.from_kubeconfig(kwok_cluster)
    assert admin.client.ready()
    assert admin.version() == "v1.34.4"


def test_a_three_replica_deployment_rolls_out(kwok_cluster: Path, namespace: str):
    kube = Kube.from_kubeconfig(kwok_cluster)
    KubeBootstrap(kube.client).create(deployment("web", namespace, 3))
    status = kube.wait_for_rollout(namespace, "web", timeout_seconds=120)
    assert status.done and "successfully rolled out" in status.message
    pods = kube.pods(namespace, "app.kubernetes.io/name=web")
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Running" and p["status"].get("podIP") for p in pods)


def test_a_deleted_pod_is_replaced_by_its_replicaset(kwok_cluster: Path, namespace: str):
    kube = Kube.from_kubeconfig(kwok_cluster)
    KubeBootstrap(kube.client).create(deployment("web", namespace, 3))
    kube.wait_for_rollout(namespace, "web", timeout_seconds=120)
    before = {p["metadata"]["name"] for p in kube.pods(namespace, "app.kubernetes.io/name=web")}
    victim = sorted(before)[0]
    assert PodKiller(kube).kill(namespace, victim)
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
    KubeBootstrap(kube.client).create(deployment("wide", namespace, 200))
    status = kube.wait_for_rollout(namespace, "wide", timeout_seconds=300)
    assert status.done
    assert kube.deployment(namespace, "wide")["status"]["availableReplicas"] == 200


@pytest.mark.parametrize("named_by", ["KUBECONFIG", "--kubeconfig"])
def test_a_reachable_kubeconfig_cluster_is_used_and_nothing_local_starts(
        kwok_cluster: Path, tmp_path: Path, named_by: str):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHIPYARD_") and k != "KUBECONFIG"}
    prefix = f"x{uuid.uuid4().hex[:6]}-"
    env.update(SHIPYARD_HOME=str(tmp_path), SHIPYARD_STACK_HOME=str(tmp_path / "stack"),
               COLUMNS="200", SHIPYARD_NAMESPACE_PREFIX=prefix)
    shipyard = [sys.executable, "-m", "shipyard.cli"]
    if named_by == "KUBECONFIG":
        env["KUBECONFIG"] = str(kwok_cluster)
    else:
        shipyard += ["--kubeconfig", str(kwok_cluster)]
    admin = KubeBootstrap.from_kubeconfig(kwok_cluster)
    try:
        up = subprocess.run([*shipyard, "up", "--only", "kubernetes"],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
        assert up.returncode == 0, up.stderr
        assert f"using the cluster of KUBECONFIG={kwok_cluster}" in up.stdout
        assert not (tmp_path / "stack" / "cluster").exists()  # nothing local was set up
        # That kubeconfig was the bootstrap admin: the environments and their identities
        # are made there, and the identities are what deploys will use.
        assert sorted(p.name for p in (tmp_path / "kube").iterdir()) == [
            f"deploy-{prefix}prod.kubeconfig", f"deploy-{prefix}staging.kubeconfig",
            f"viewer-{prefix}system.kubeconfig"]
        deployer = KubeBootstrap.from_kubeconfig(
            tmp_path / "kube" / f"deploy-{prefix}prod.kubeconfig")
        assert deployer.whoami() == f"system:serviceaccount:{prefix}system:deploy-prod"
        status = subprocess.run([*shipyard, "status", "--json",
                                 "--only", "kubernetes"], env=env, capture_output=True,
                                text=True, timeout=120, check=False)
        [component] = json.loads(status.stdout)["components"]
        assert component["healthy"] and component["detail"] == "external cluster"
        assert component["version"] == "v1.34.4"
    finally:
        for name in ("staging", "prod", "system"):
            admin.delete_namespace(prefix + name)


def test_an_unreachable_kubeconfig_cluster_is_a_clear_error(tmp_path: Path):
    kubeconfig = tmp_path / "elsewhere.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: x, user: {token: nothing}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(SHIPYARD_HOME=str(tmp_path), SHIPYARD_STACK_HOME=str(tmp_path / "stack"),
               KUBECONFIG=str(kubeconfig))
    up = subprocess.run([sys.executable, "-m", "shipyard.cli", "up", "--only", "kubernetes"],
                        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert up.returncode == 1
    assert "does not answer" in up.stderr and "unset KUBECONFIG" in up.stderr
