"""The canary's metrics through the stack's real Prometheus, against the pods' own scrape,
on the local cluster's real node.

Two tracks (baseline and canary, one pod each) of the tiny metrics server of
``test_pod_metrics``: every GET /metrics adds 10 requests answered 200 and 1 answered 500
on /work (5 of the 11 within 0.1 s, 9 within 0.5 s) and one on /metrics. Whoever scrapes,
a step's error rate is exactly 1/11 and its p95 latency is 0.5 s (the rank falls in the
+Inf bucket), so both providers must give the judge those numbers for every step.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.adapters.prometheus import Prometheus
from shipyard.domain.canary_config import canary_config_for
from shipyard.domain.canary_judge import judge_canary
from shipyard.domain.catalog import AppDescriptor, CanaryMetric
from shipyard.settings import Settings
from stages.canary_metrics import MetricsProvider, PodsProvider, PrometheusProvider, Window
from tests.integration.test_pod_metrics import SERVER
from tests.support.images import script_image
from tests.support.stack import STACK_CACHE
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

APP = "scraped"
SCRAPES_PER_POD = ("sum(rate(demo_scrapes_total{namespace=\"{{ namespace }}\","
                   "app=\"{{ app }}\",track=\"{{ track }}\"}[{{ interval }}]))")
DESCRIPTOR = AppDescriptor(
    name=APP, port=8080, liveness_path="/healthz", readiness_path="/healthz",
    depends_on=(), metrics_prefix="demo",
    canary_metrics=(
        CanaryMetric("error-rate", "error_rate", critical=True),
        CanaryMetric("latency-p95", "latency", quantile=0.95),
        CanaryMetric("request-rate", "rate", direction="decrease"),
        CanaryMetric("scrapes", "query", direction="either", query=SCRAPES_PER_POD),
    ))


def tracked(track: str, namespace: str, image: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": APP, "shipyard.dev/track": track}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"{APP}-{track}", "namespace": namespace, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {
                         "metadata": {"labels": labels,
                                      # Not deployed by Shipyard: asks to be scraped.
                                      "annotations": {"prometheus.io/scrape": "true"}},
                         "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                             "name": "server", "image": image,
                             "imagePullPolicy": "IfNotPresent",
                             "ports": [{"name": "http", "containerPort": 8080}],
                             "readinessProbe": {"httpGet": {"path": "/healthz",
                                                            "port": 8080},
                                                "periodSeconds": 1}}]}}}}


@pytest.fixture(scope="module")
def tracks(real_cluster: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Kube, str]]:
    image = script_image(tmp_path_factory.mktemp("scraped"), "metrics-server", SERVER)
    kube = Kube.from_kubeconfig(real_cluster)
    admin = KubeBootstrap(kube.client)
    namespace = f"prometheus-{uuid.uuid4().hex[:8]}"
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        for track in ("baseline", "canary"):
            admin.create(tracked(track, namespace, image))
        for track in ("baseline", "canary"):
            status = kube.wait_for_rollout(namespace, f"{APP}-{track}", timeout_seconds=180)
            assert status.done, status.message
        prometheus = Prometheus(Settings().prometheus_base_url)
        # Prometheus finds the pods through its discovery (refreshed every 2 s).
        eventually(lambda: {t["labels"].get("track") for t in prometheus.active_targets()
                            if t["labels"].get("namespace") == namespace
                            and t.get("health") == "up"} == {"baseline", "canary"} or None,
                   seconds=60, what="Prometheus scraping both tracks")
        yield kube, namespace
    finally:
        admin.delete_namespace(namespace)


def test_prometheus_and_the_pods_give_the_judge_the_same_series(tracks):
    kube, namespace = tracks
    settings = Settings()
    prometheus = Prometheus(settings.prometheus_base_url)
    window = Window(seconds=8.0, interval=2.0)

    async def both() -> list[Any]:
        providers: list[MetricsProvider] = [
            PrometheusProvider(prometheus, settings.prometheus_scrape_seconds),
            PodsProvider(kube)]
        for provider in providers:
            await provider.prepare(DESCRIPTOR, namespace, 1)
        return list(await asyncio.gather(
            *(p.measure(DESCRIPTOR, namespace, window) for p in providers)))

    from_prometheus, from_pods = asyncio.run(both())
    assert from_prometheus.provider == "prometheus" and from_pods.provider == "pods"
    for measured in (from_prometheus, from_pods):
        for track in ("baseline", "canary"):
            series = measured.series[track]
            errors = [v for v in series["error-rate"] if v is not None]
            latencies = [v for v in series["latency-p95"] if v is not None]
            # Ready before the window: the first step has its data; a later one may miss
            # a scrape on a busy machine, most do not.
            assert series["error-rate"][0] is not None, (measured.provider, series)
            assert len(errors) >= 3 and len(latencies) >= 3, (measured.provider, series)
            assert all(math.isclose(v, 1 / 11, rel_tol=1e-6) for v in errors), series
            assert all(math.isclose(v, 0.5) for v in latencies), series
    # The PromQL metric: one scrape per second per pod (Prometheus's own), whatever the
    # pods' provider added; the pods cannot answer it at all.
    scrapes = [v for v in from_prometheus.series["canary"]["scrapes"] if v is not None]
    assert scrapes and all(0.5 <= v <= 3.0 for v in scrapes), scrapes
    assert all(v is None for v in from_pods.series["canary"]["scrapes"])
    assert any("only Prometheus answers" in note for note in from_pods.notes)
    # Requests per second: 11 per scrape, and Prometheus scrapes every second.
    rates = [v for v in from_prometheus.series["canary"]["request-rate"] if v is not None]
    assert rates and all(8 <= v <= 40 for v in rates), rates
    # The same verdict from either (baseline and canary are the same build).
    config = canary_config_for(DESCRIPTOR)
    verdicts = {m.provider: judge_canary(config, m.series["baseline"], m.series["canary"])
                for m in (from_prometheus, from_pods)}
    assert verdicts["prometheus"].metrics["error-rate"].classification == \
        verdicts["pods"].metrics["error-rate"].classification == "Pass"
    # Each metric links to its graph for the window, which Prometheus serves.
    link = from_prometheus.links["error-rate"]["canary"]
    # Debian's Prometheus has the classic UI only.
    assert link.startswith(f"{settings.prometheus_base_url}/classic/graph?g0.expr=")
    assert httpx.get(link, timeout=10).status_code == 200
    assert from_prometheus.cost["queries"] == 2 * len(DESCRIPTOR.canary_metrics)


def test_prometheus_that_never_scrapes_a_track_fails_clearly_before_the_window(tracks):
    from stages.runtime import StageFailure

    _, namespace = tracks
    settings = Settings()
    provider = PrometheusProvider(Prometheus(settings.prometheus_base_url),
                                  settings.prometheus_scrape_seconds, ready_within_seconds=2)
    with pytest.raises(StageFailure) as failed:
        asyncio.run(provider.prepare(DESCRIPTOR, namespace, replicas=3))
    assert failed.value.reason == "MetricsUnavailable"
    assert "scrapes 1 of 3 baseline pod(s), 1 of 3 canary pod(s)" in failed.value.message


def test_a_query_that_names_an_unknown_placeholder_fails_the_measurement(tracks):
    from stages.runtime import StageFailure

    _, namespace = tracks
    settings = Settings()
    typo = AppDescriptor(name=APP, port=8080, liveness_path="/healthz",
                         readiness_path="/healthz", depends_on=(),
                         metrics_prefix="demo", canary_metrics=(CanaryMetric(
                             "scrapes", "query", query='sum(up{track="{{ trak }}"})'),))
    provider = PrometheusProvider(Prometheus(settings.prometheus_base_url),
                                  settings.prometheus_scrape_seconds)
    with pytest.raises(StageFailure) as failed:
        asyncio.run(provider.measure(typo, namespace, Window(seconds=2.0, interval=2.0)))
    assert failed.value.reason == "InvalidCanaryMetric"
    assert "{{ trak }}" in failed.value.message and "{{ track }}" in failed.value.message


def test_a_past_window_is_judged_from_prometheus_with_a_kayenta_config(tracks, tmp_path):
    _, namespace = tracks
    settings = Settings()
    errors = ('PromQL:sum(increase(demo_http_requests_total{namespace="${location}",'
              'track="${scope}",route="/work",status="500"}[4s])) / sum(increase('
              'demo_http_requests_total{namespace="${location}",track="${scope}",'
              'route="/work"}[4s]))')
    config = {"name": "backtest", "configVersion": "1", "applications": ["scraped"],
              "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
              "metrics": [{"name": "error-rate", "groups": ["errors"],
                           "query": {"type": "prometheus", "serviceType": "prometheus",
                                     "customInlineTemplate": errors},
                           "analysisConfigurations": {"canary": {"direction": "increase"}},
                           "scopeName": "default"}],
              "templates": {},
              "classifier": {"groupWeights": {"errors": 100},
                             "scoreThresholds": {"pass": 95, "marginal": 75}}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    now = time.time()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHIPYARD_"))}
    env.update(SHIPYARD_HOME=str(tmp_path / "home"), COLUMNS="200")
    done = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "canary", "judge", "--config", str(path),
         "--prometheus", settings.prometheus_base_url, "--window",
         f"{now - 40:.0f}..{now - 4:.0f}", "--step", "4", "--namespace", namespace],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    judged = json.loads(done.stdout)
    assert judged["verdict"] == "pass", judged
    assert judged["metrics"]["error-rate"]["classification"] == "Pass"
    assert set(judged["links"]["error-rate"]) == {"baseline", "canary"}
    # A window that is not one names the fix.
    bad = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "canary", "judge", "--config", str(path),
         "--prometheus", settings.prometheus_base_url, "--window", "yesterday"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "START..END" in bad.stderr


def test_prometheus_reads_the_cluster_as_an_identity_that_may_only_read_pods(tracks):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    _, namespace = tracks
    # The shared stack's, as the `real_cluster` fixture brought it up.
    stack = Path(os.environ.get("SHIPYARD_STACK_HOME", STACK_CACHE))
    kubeconfig = stack / "prometheus" / "prometheus.kubeconfig"
    assert kubeconfig.stat().st_mode & 0o077 == 0  # a secret file: the token
    core = client.CoreV1Api(Kube.from_kubeconfig(kubeconfig).client.api)

    def status(call: Any) -> int:
        try:
            call()
        except ApiException as err:
            return int(err.status or 0)
        return 200

    assert status(lambda: core.list_pod_for_all_namespaces(limit=1)) == 200
    assert status(lambda: core.list_namespaced_pod(namespace)) == 200
    forbidden = {
        "read secrets": lambda: core.list_namespaced_secret(namespace),
        "read config maps": lambda: core.list_namespaced_config_map(namespace),
        "list nodes": lambda: core.list_node(),
        "delete a pod": lambda: core.delete_collection_namespaced_pod(namespace),
        "read pods' logs": lambda: core.read_namespaced_pod_log("any", namespace),
    }
    assert {what: status(call) for what, call in forbidden.items()} == \
        dict.fromkeys(forbidden, 403)


def test_an_existing_prometheus_is_used_and_nothing_local_starts(tracks, tmp_path):
    settings = Settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHIPYARD_"))}
    env.update(SHIPYARD_HOME=str(tmp_path / "home"), COLUMNS="200",
               SHIPYARD_STACK_HOME=str(tmp_path / "stack"),
               SHIPYARD_PROMETHEUS_URL=settings.prometheus_base_url)

    def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "shipyard.cli", *args], env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    used = shipyard("up", "--only", "prometheus")
    assert used.returncode == 0, used.stdout + used.stderr
    assert f"using the Prometheus at {settings.prometheus_base_url}" in used.stdout
    assert not (tmp_path / "stack" / "prometheus").exists()  # nothing of its own
    status = shipyard("status", "--json", "--only", "prometheus")
    assert status.returncode == 0, status.stdout + status.stderr
    (component,) = json.loads(status.stdout)["components"]
    assert component["healthy"] and "external" in component["detail"]
    env["SHIPYARD_PROMETHEUS_URL"] = "http://127.0.0.1:9"  # the discard port: no answer
    refused = shipyard("up", "--only", "prometheus")
    assert refused.returncode != 0
    assert "SHIPYARD_PROMETHEUS_URL names http://127.0.0.1:9" in refused.stdout + \
        refused.stderr
