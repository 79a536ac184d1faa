"""The chaos gate against the local cluster's real node, as Chaos Toolkit experiments run
by ``chaostoolkit-lib``: the default experiment kills the only pod of an app run with one
replica, which breaks its availability (deviated), and one of three, which does not
(passed); the documentation's latency experiment slows an app down through its fault file
until its hypothesis fails, and its rollback puts the file back.

The version app is a tiny HTTP server answering ``/version``. Its readiness probe waits
8 s, as an app warming up would, so the replacement of a killed pod is not ready before the
experiment's second window has closed: what the single replica's Service has during that
window is no endpoint at all, and what the three replicas' Service has is two pods. The
faulty app reads its faults as servicekit does, from the ``faults.json`` key of its
ConfigMap mounted where ``FAULT_CONFIG_FILE`` says, on every request to its own paths.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow
from prefect.testing.utilities import prefect_test_harness

from shipyard.adapters.chaos_toolkit import read_experiment
from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.domain.catalog import AppDescriptor, Slo
from shipyard.domain.fault_files import SAVED_FAULTS_ANNOTATION
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.stack.environments import EnvironmentBootstrap
from shipyard.store import Ledger, Store
from stages.chaos import verify_chaos
from stages.lifecycle import PipelineFailed, begin_run, running
from stages.runtime import RunContext, open_store
from tests.support.images import script_image

pytestmark = pytest.mark.integration

READY_AFTER_SECONDS = 8
WINDOW_SECONDS = 4.0
SETTLE_SECONDS = 2.0
SERVER = """\
import http.server, json
class Version(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"version": "v1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), Version).serve_forever()
"""


FAULTY_SERVER = """\
import http.server, json, os, random, time
FAULTS = os.environ["FAULT_CONFIG_FILE"]
OPERATIONAL = {"/healthz", "/readyz", "/metrics", "/version"}
class Faulty(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200
        if self.path not in OPERATIONAL:
            try:
                with open(FAULTS) as f:
                    faults = json.load(f)
            except (OSError, ValueError):
                faults = {}
            time.sleep(float(faults.get("FAULT_LATENCY_MS", 0)) / 1000)
            if random.random() < float(faults.get("FAULT_ERROR_RATE", 0)):
                status = 500
        body = json.dumps({"version": "v1"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), Faulty).serve_forever()
"""
DOCS_EXPERIMENT = Path(__file__).resolve().parents[2] / "docs" / "chaos" / \
    "latency-experiment.yaml"


@pytest.fixture(scope="module")
def version_image(real_cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return script_image(tmp_path_factory.mktemp("version-server"), "version-server", SERVER)


@pytest.fixture(scope="module")
def faulty_image(real_cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return script_image(tmp_path_factory.mktemp("faulty-server"), "faulty-server",
                        FAULTY_SERVER)


def workload(name: str, namespace: str, image: str, replicas: int) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": name, "shipyard.dev/track": "canary"}
    probe = {"httpGet": {"path": "/version", "port": 8080}, "periodSeconds": 1,
             "initialDelaySeconds": READY_AFTER_SECONDS}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "terminationGracePeriodSeconds": 0,
                      # The environment enforces the restricted Pod Security Standard.
                      "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                          "seccompProfile": {"type": "RuntimeDefault"}},
                      "containers": [{
                          "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
                          "ports": [{"containerPort": 8080}], "readinessProbe": probe,
                          "securityContext": {"allowPrivilegeEscalation": False,
                                              "capabilities": {"drop": ["ALL"]}}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": namespace},
         "spec": {"selector": {"app.kubernetes.io/name": name},
                  "ports": [{"port": 80, "targetPort": 8080}]}},
    ]


def faulty_workload(name: str, namespace: str, image: str) -> list[dict[str, Any]]:
    """An app that reads a fault file from its ConfigMap, as the bundled apps' templates
    mount it, two replicas behind a Service."""
    [deployment, service] = workload(name, namespace, image, replicas=2)
    pod = deployment["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "config", "configMap": {"name": f"{name}-config"}}]
    container = pod["containers"][0]
    container["env"] = [{"name": "FAULT_CONFIG_FILE", "value": f"/etc/{name}/faults.json"}]
    container["volumeMounts"] = [{"name": "config", "mountPath": f"/etc/{name}",
                                  "readOnly": True}]
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": f"{name}-config", "namespace": namespace},
                 "data": {"faults.json": "{}"}}
    return [configmap, deployment, service]


@dataclass(frozen=True)
class Target:
    name: str
    namespace: str
    selector: str
    url: str


@dataclass(frozen=True)
class Cluster:
    kube: Kube
    home: Path
    """The home whose deploy identity of the namespace the stage uses."""
    one: Target
    three: Target
    faulty: Target


@pytest.fixture(scope="module")
def cluster(real_cluster: Path, version_image: str, faulty_image: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """An environment of the module's own, made as `shipyard up` makes them (with its
    deploy identity, which the stage uses), with the version app at one replica and at
    three and the faulty app at two (applied as a deploy applies it), each behind a Service
    answering on its ClusterIP from this host."""
    kube = Kube.from_kubeconfig(real_cluster)
    admin = KubeBootstrap(kube.client)
    home = tmp_path_factory.mktemp("chaos-home")
    prefix = f"chaos-{uuid.uuid4().hex[:8]}-"
    namespace = f"{prefix}test"
    try:
        EnvironmentBootstrap(Settings(home=home, namespace_prefix=prefix,
                                      environments=["test"]), real_cluster).ensure()
        targets = {}
        for name, replicas in (("one", 1), ("three", 3)):
            for manifest in workload(name, namespace, version_image, replicas):
                admin.create(manifest)
        for manifest in faulty_workload("faulty", namespace, faulty_image):
            kube.apply(manifest)
        for name in ("one", "three", "faulty"):
            status = kube.wait_for_rollout(namespace, name, timeout_seconds=180)
            assert status.done, status.message
            url = f"http://{kube.service(namespace, name)['spec']['clusterIP']}:80"
            wait_until_answering(url)
            targets[name] = Target(name, namespace,
                                   f"app.kubernetes.io/name={name},shipyard.dev/track=canary",
                                   url)
        yield Cluster(kube, home, targets["one"], targets["three"], targets["faulty"])
    finally:
        admin.delete_namespace(namespace)
        admin.delete_namespace(f"{prefix}system")


def wait_until_answering(url: str) -> None:
    deadline = time.monotonic() + 30  # kube-proxy writes the Service's rules within seconds
    while True:
        try:
            if httpx.get(f"{url}/version", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    """A throw-away Prefect server of this module's own (seconds to start, unlike the
    stack's): the stage runs as the Prefect task the CD flow calls."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture
def store(cluster: Cluster, prefect_server: None,
          monkeypatch: pytest.MonkeyPatch) -> Store:
    """The store the stage records in (SQLite in the module's home, where the deploy
    identity is too)."""
    monkeypatch.setenv("SHIPYARD_HOME", str(cluster.home))
    monkeypatch.delenv("SHIPYARD_DATABASE_URL", raising=False)
    return open_store()


APP = AppDescriptor(name="version-server", port=8080, liveness_path="/version",
                    readiness_path="/version", depends_on=(),
                    slo=Slo(availability=0.995, latency_p99_seconds=1.0))
FAULTY_APP = AppDescriptor(name="faulty", port=8080, liveness_path="/version",
                           readiness_path="/version", depends_on=(), load_paths=("/work",),
                           slo=Slo(availability=0.995, latency_p99_seconds=1.0))
REF = "chaos:version-server"


@flow(name="chaos-gate-test")
async def chaos_gate(target: Target, experiment: dict[str, Any] | None = None,
                     source: str = "", app: AppDescriptor = APP,
                     paths: tuple[str, ...] = ("/version",)) -> str:
    """What the CD flow does between canary and promotion: the default experiment, or
    ``experiment`` as the app's descriptor would name it."""
    run = await begin_run("cd", (StageSpec(REF),), run_id=None, trigger="test")
    async with running(run):
        await verify_chaos(run, app=app, namespace=target.namespace,
                           selector=target.selector, target_url=target.url,
                           paths=paths, window_seconds=WINDOW_SECONDS,
                           settle_seconds=SETTLE_SECONDS, seed=7, experiment=experiment,
                           experiment_source=source, stage_ref=REF)
    return run.run_id


def logged(store: Store, run_id: str) -> str:
    return "".join(chunk.text for chunk in store.read_logs(run_id, REF))


def test_chaos_deviates_for_an_app_run_with_one_replica(cluster, store):
    with pytest.raises(PipelineFailed) as failed:
        asyncio.run(chaos_gate(cluster.one))
    run = store.get_run(failed.value.run.id)
    chaos = run.stage(REF)
    assert chaos.state is State.FAILED and chaos.reason == "ChaosDeviated"
    assert chaos.message.startswith("deviated: killed 1 of 1 pod (one-")
    assert "failure-ratio 1, expected ≤ 0.005" in chaos.message
    assert chaos.outputs["verdict"] == "deviated" and chaos.outputs["seed"] == 7
    report = chaos.outputs["report"]
    [audit] = Ledger(store).audit_trail(subject_kind="run", subject_id=run.id)
    assert audit.action == "chaos-experiment" and audit.details["kills"] == report["kills"]
    assert report["verdict"] == "deviated" and report["before"]["met"]
    assert [k["pod"] for k in report["kills"]] == report["candidates"]
    assert not report["after"]["met"]
    # Chaos Toolkit's journal: the hypothesis judged twice, the kill, no rollbacks.
    journal = report["journal"]
    assert journal["deviated"] is True and journal["run"][0]["status"] == "succeeded"
    assert journal["run"][0]["output"]["killed"] == report["candidates"]
    assert journal["rollbacks"] == []
    text = logged(store, run.id)
    assert f"action kill-pods: succeeded (killed {report['kills'][0]['pod']})" in text
    assert "verdict: deviated" in text


def test_chaos_passes_for_an_app_run_with_three_replicas(cluster, store):
    run_id = asyncio.run(chaos_gate(cluster.three))
    chaos = store.get_run(run_id).stage(REF)
    assert chaos.state is State.SUCCEEDED, chaos.message
    assert chaos.message.startswith("passed: killed 1 of 3 pods")
    report = chaos.outputs["report"]
    assert chaos.outputs["verdict"] == "passed" and chaos.outputs["seed"] == 7
    assert len(report["candidates"]) == 3
    [kill] = report["kills"]
    assert kill["pod"] in report["candidates"]
    after = {p["name"]: p for p in report["after"]["probes"]}
    assert after["failure-ratio"]["value"] == 0.0 and after["requests"]["met"]
    # The kill action's pause: the Service forgets the dead pod before the second window.
    assert report["after"]["window"]["start"] == pytest.approx(
        kill["at_seconds"] + SETTLE_SECONDS, abs=0.25)
    pods = cluster.kube.pods(cluster.three.namespace, cluster.three.selector)
    assert kill["pod"] not in {p["metadata"]["name"] for p in pods}
    assert report["source"].startswith("generated for version-server")
    assert report["journal"]["status"] == "completed"


def faults_file(cluster: Cluster) -> tuple[str, dict[str, str]]:
    """The faulty app's fault file as its ConfigMap has it, and the ConfigMap's
    annotations."""
    configmap = cluster.kube.get({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "faulty-config", "namespace": cluster.faulty.namespace}})
    assert configmap is not None
    return (configmap["data"]["faults.json"],
            configmap["metadata"].get("annotations") or {})


def test_the_docs_latency_experiment_deviates_and_its_rollback_clears_the_fault(cluster,
                                                                              store):
    experiment = read_experiment(DOCS_EXPERIMENT)
    # Past the SLO's p99 (1 s here), within the probe's timeout (2 s): answered, too slow.
    experiment["configuration"]["added_latency_ms"] = 1500
    with pytest.raises(PipelineFailed) as failed:
        asyncio.run(chaos_gate(cluster.faulty, experiment,
                               "docs/chaos/latency-experiment.yaml", app=FAULTY_APP,
                               paths=("/work",)))
    run = store.get_run(failed.value.run.id)
    chaos = run.stage(REF)
    assert chaos.state is State.FAILED and chaos.reason == "ChaosDeviated", chaos.message
    assert chaos.message.startswith("deviated: ran inject-latency; then ")
    assert "latency-p99 1.5" in chaos.message
    report = chaos.outputs["report"]
    assert report["experiment"] == "faulty keeps its SLO with 1500 ms of added latency"
    [inject] = report["method"]
    assert inject["status"] == "succeeded" and inject["output"]["configmap"] == "faulty-config"
    assert inject["output"]["confirmed_after_seconds"] <= 150
    [clear] = report["rollbacks"]
    assert clear["name"] == "clear-faults" and clear["status"] == "succeeded", clear
    assert clear["output"]["restored"] is True and clear["output"]["faults"] == "{}"
    assert json.loads(clear["output"]["removed"])["FAULT_LATENCY_MS"] == 1500
    # The rollback ran as Chaos Toolkit's journal has it, and the ConfigMap is as before.
    [rollback] = report["journal"]["rollbacks"]
    assert rollback["status"] == "succeeded"
    assert rollback["activity"]["provider"]["func"] == "clear_faults"
    text, annotations = faults_file(cluster)
    assert text == "{}" and SAVED_FAULTS_ANNOTATION not in annotations
    answer = httpx.get(f"{cluster.faulty.url}/work", timeout=5, trust_env=False)
    assert answer.status_code == 200 and answer.elapsed.total_seconds() < 1
    [audit] = Ledger(store).audit_trail(subject_kind="run", subject_id=run.id)
    assert audit.details["rollbacks"] == report["rollbacks"]


def test_the_stage_takes_the_inputs_the_cd_flow_passes():
    bound = inspect.signature(verify_chaos).bind(
        RunContext("run-1"), app=APP, namespace="shipyard-staging",
        selector="app.kubernetes.io/name=gateway,shipyard.dev/track=canary",
        target_url="http://10.96.0.10:80", paths=("/version",), window_seconds=10.0,
        seed=None, stage_ref="chaos:gateway")
    assert bound.arguments["stage_ref"] == "chaos:gateway"
    assert verify_chaos.name == "chaos"
