"""Cluster DNS on the local cluster's real node, asked from inside pods as the apps ask:
glibc's getaddrinfo, through the resolv.conf the kubelet writes.

In a namespace of its own: two ready pods behind a ClusterIP Service (``web``) and a
headless one (``web-peers``), a third pod with the same labels that never becomes ready,
and a selector-less headless Service whose EndpointSlice lists more addresses than a UDP
answer holds.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.stack.cluster_dns import lookup
from tests.support.images import script_image

pytestmark = pytest.mark.integration

NAMESERVER = "10.200.0.1"
MANY = 60  # a 512-byte UDP answer holds about 28 A records
SERVER = """\
import http.server
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), Ok).serve_forever()
"""
# Run inside a pod: each name's addresses (or the resolver's error), as JSON.
RESOLVE = """\
import json, socket, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = sorted({i[4][0] for i in socket.getaddrinfo(name, 80,
                                                                   type=socket.SOCK_STREAM)})
    except socket.gaierror as err:
        found[name] = {"error": err.errno}
print(json.dumps(found))
"""
# Run inside a pod: how long getaddrinfo takes for one name, asked `count` times.
TIME_LOOKUPS = """\
import json, socket, sys, time
name, count = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(count):
    start = time.perf_counter()
    socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)
    times.append(time.perf_counter() - start)
times.sort()
print(json.dumps({"p50": times[len(times) // 2], "p99": times[int(len(times) * 0.99)]}))
"""


@pytest.fixture(scope="module")
def server_image(real_cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return script_image(tmp_path_factory.mktemp("dns-web"), "dns-web", SERVER)


def deployment(name: str, namespace: str, image: str, replicas: int,
               ready_port: int) -> dict[str, Any]:
    labels = {"app": "web"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {**labels, "deployment": name}},
                     "template": {
                         "metadata": {"labels": {**labels, "deployment": name}},
                         "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                             "name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
                             "ports": [{"name": "http", "containerPort": 8080}],
                             "readinessProbe": {"httpGet": {"path": "/", "port": ready_port},
                                                "periodSeconds": 1}}]}}}}


def service(name: str, namespace: str, *, headless: bool,
            selector: dict[str, str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    if selector:
        spec["selector"] = selector
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


@dataclass(frozen=True)
class World:
    kube: Kube
    kubectl: list[str]
    namespace: str
    cluster_ip: str
    ready_ips: list[str]
    unready_ip: str
    client_pod: str

    def in_pod(self, *argv: str) -> str:
        done = subprocess.run([*self.kubectl, "-n", self.namespace, "exec", self.client_pod,
                               "--", *argv], capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def resolve(self, *names: str) -> dict[str, Any]:
        return dict(json.loads(self.in_pod("python3", "-c", RESOLVE, *names)))


def pods_of(kube: Kube, namespace: str, selector: str, *, ready: bool) -> list[dict[str, Any]]:
    return [p for p in kube.pods(namespace, selector)
            if p["status"].get("podIP") and ready == any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions") or [])]


def eventually(check: Any, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture(scope="module")
def world(real_cluster: Path, server_image: str) -> Iterator[World]:
    kube = Kube.from_kubeconfig(real_cluster)
    admin = KubeBootstrap(kube.client)
    kubectl = [str(real_cluster.parent / "bin" / "kubectl"), f"--kubeconfig={real_cluster}"]
    namespace = f"dns-{uuid.uuid4().hex[:8]}"
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        admin.create(deployment("web", namespace, server_image, 2, 8080))
        admin.create(deployment("web-unready", namespace, server_image, 1, 8081))
        admin.create(service("web", namespace, headless=False, selector={"app": "web"}))
        admin.create(service("web-peers", namespace, headless=True, selector={"app": "web"}))
        admin.create(service("many", namespace, headless=True, selector=None))
        subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "many-1", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": "many"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.88.200.{i}"], "conditions": {"ready": True}}
                          for i in range(MANY)]}), text=True, check=True,
                       capture_output=True, timeout=60)
        assert kube.wait_for_rollout(namespace, "web", timeout_seconds=180).done
        unready = eventually(lambda: pods_of(kube, namespace, "deployment=web-unready",
                                             ready=False))
        assert unready, "the pod that never becomes ready has an address"
        ready = pods_of(kube, namespace, "deployment=web", ready=True)
        yield World(kube, kubectl, namespace,
                    kube.service(namespace, "web")["spec"]["clusterIP"],
                    sorted(p["status"]["podIP"] for p in ready),
                    unready[0]["status"]["podIP"], ready[0]["metadata"]["name"])
    finally:
        admin.delete_namespace(namespace)


def test_a_pod_is_told_to_ask_the_cluster_dns_with_the_cluster_search_path(world):
    resolv_conf = world.in_pod("cat", "/etc/resolv.conf").split("\n")
    assert f"nameserver {NAMESERVER}" in resolv_conf
    assert any(line.startswith(f"search {world.namespace}.svc.cluster.local "
                               "svc.cluster.local cluster.local") for line in resolv_conf)


def test_the_short_name_resolves_to_the_cluster_ip(world):
    assert world.resolve("web") == {"web": [world.cluster_ip]}


def test_the_fully_qualified_name_resolves_to_the_cluster_ip(world):
    fqdn = f"web.{world.namespace}.svc.cluster.local"
    assert world.resolve(fqdn, "web." + world.namespace) == {
        fqdn: [world.cluster_ip], "web." + world.namespace: [world.cluster_ip]}


def test_the_headless_name_resolves_to_every_ready_pod_and_no_other(world):
    found = world.resolve("web-peers")["web-peers"]
    assert found == world.ready_ips
    assert world.unready_ip not in found


def test_an_unknown_name_does_not_resolve(world):
    fqdn = f"nope.{world.namespace}.svc.cluster.local"
    found = world.resolve("nope", fqdn)
    assert "error" in found["nope"], "no address"
    assert found[fqdn] == {"error": -2}, "NXDOMAIN: EAI_NONAME, not a passing failure"


def test_a_headless_answer_too_big_for_udp_comes_whole_over_tcp(world):
    found = world.resolve("many")["many"]
    assert len(found) == MANY


def test_the_api_servers_own_name_resolves(world):
    assert world.resolve("kubernetes.default") == {"kubernetes.default": ["10.96.0.1"]}


def test_a_new_service_resolves_within_seconds(world):
    KubeBootstrap(world.kube.client).create(
        service("late", world.namespace, headless=False, selector={"app": "web"}))
    cluster_ip = world.kube.service(world.namespace, "late")["spec"]["clusterIP"]
    name = f"late.{world.namespace}.svc.cluster.local"
    start = time.monotonic()
    answer = eventually(lambda: (lookup(name, server=NAMESERVER) or ("", []))[1], 10)
    assert answer == [cluster_ip], f"after {time.monotonic() - start:.1f}s"


def test_srv_names_the_ready_pods_and_foreign_names_are_refused(world):
    rcode, targets = lookup(f"_http._tcp.web-peers.{world.namespace}.svc.cluster.local",
                            "SRV", server=NAMESERVER) or ("", [])
    assert rcode == "NOERROR" and len(targets) == len(world.ready_ips)
    assert all(t.startswith("0 100 8080 ") for t in targets)
    assert lookup("example.com", server=NAMESERVER) == ("REFUSED", [])


def test_a_lookup_from_a_pod_takes_about_a_millisecond(world):
    """200 look-ups of one absolute name from inside a pod (bounded, node-local)."""
    fqdn = f"web.{world.namespace}.svc.cluster.local."
    figures = json.loads(world.in_pod("python3", "-c", TIME_LOOKUPS, fqdn, "200"))
    print(f"getaddrinfo from a pod: p50 {figures['p50'] * 1e3:.2f} ms, "
          f"p99 {figures['p99'] * 1e3:.2f} ms")
    assert figures["p50"] < 0.005
