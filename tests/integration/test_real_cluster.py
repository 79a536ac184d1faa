"""The local cluster's real node: an image built on the base image and pushed to the local
registry runs as three pods that answer HTTP through a Service."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.adapters.pod_killer import PodKiller
from tests.support.images import script_image

pytestmark = pytest.mark.integration

SERVER = """\
import http.server, socket
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {socket.gethostname()}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("", 8080), Hello).serve_forever()
"""


@pytest.fixture(scope="module")
def hello_image(real_cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return script_image(tmp_path_factory.mktemp("hello-server"), "hello-server", SERVER)


def workload(name: str, namespace: str, image: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "shipyard"}
    probe = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                      "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
                      "ports": [{"containerPort": 8080}], "readinessProbe": probe}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
    ]


@pytest.fixture
def hello(real_cluster: Path, hello_image: str) -> Iterator[tuple[Kube, str]]:
    kube = Kube.from_kubeconfig(real_cluster)
    admin = KubeBootstrap(kube.client)
    namespace = f"real-{uuid.uuid4().hex[:8]}"
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for manifest in workload("hello", namespace, hello_image):
        admin.create(manifest)
    status = kube.wait_for_rollout(namespace, "hello", timeout_seconds=180)
    assert status.done, status.message
    yield kube, namespace
    admin.delete_namespace(namespace)


def test_three_real_pods_answer_through_the_service(hello):
    kube, namespace = hello
    pods = kube.pods(namespace, "app.kubernetes.io/name=hello")
    names = {p["metadata"]["name"] for p in pods}
    assert len(names) == 3
    assert all(p["spec"]["nodeName"] == "shipyard-node" for p in pods)
    answered = set()
    for _ in range(30):  # the Service spreads requests over its endpoints
        answer = kube.service_proxy_get(namespace, "hello:80", "/")
        assert answer.startswith("hello from ")
        answered.add(answer.split()[-1])
    assert answered <= names and len(answered) >= 2


def test_the_cluster_ip_answers_from_the_host_through_kube_proxy(hello):
    kube, namespace = hello
    cluster_ip = kube.service(namespace, "hello")["spec"]["clusterIP"]
    deadline = time.monotonic() + 30  # kube-proxy writes the Service's rules within seconds
    while True:
        done = subprocess.run(["curl", "-sS", "--max-time", "3", f"http://{cluster_ip}/"],
                              capture_output=True, text=True, check=False, timeout=30)
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hello from hello-")


def test_a_node_port_answers_on_the_host_loopback(hello):
    kube, namespace = hello
    labels = {"app.kubernetes.io/name": "hello", "app.kubernetes.io/managed-by": "shipyard"}
    KubeBootstrap(kube.client).create({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hello-nodeport", "namespace": namespace},
        "spec": {"type": "NodePort", "selector": labels,
                 "ports": [{"port": 80, "targetPort": 8080}]}})
    node_port = kube.service(namespace, "hello-nodeport")["spec"]["ports"][0]["nodePort"]
    url = f"http://127.0.0.1:{node_port}/"
    deadline = time.monotonic() + 30  # kube-proxy writes the Service's rules within seconds
    while True:
        try:
            answer = httpx.get(url, timeout=3)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert answer.status_code == 200
    assert answer.text.startswith("hello from hello-")


def test_a_deleted_real_pod_is_replaced(hello):
    kube, namespace = hello
    before = {p["metadata"]["name"] for p in kube.pods(namespace, "app.kubernetes.io/name=hello")}
    victim = sorted(before)[0]
    assert PodKiller(kube).kill(namespace, victim)
    deadline = time.monotonic() + 90
    ready: set[str] = set()
    while time.monotonic() < deadline:
        ready = {p["metadata"]["name"] for p in kube.pods(namespace, "app.kubernetes.io/name=hello")
                 if not p["metadata"].get("deletionTimestamp") and any(
                     c["type"] == "Ready" and c["status"] == "True"
                     for c in p["status"].get("conditions") or [])}
        if victim not in ready and len(ready) == 3:
            break
        time.sleep(0.5)
    assert victim not in ready and len(ready) == 3
