"""Scraping real pods' /metrics through the API server's pod proxy, on the local cluster's
real node: two pods of a tiny server whose counters grow by a known amount per scrape, and
a third that never gets Ready."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.adapters.pod_metrics import scrape_pods, start_recording
from shipyard.domain.catalog import AppDescriptor, CanaryMetric
from shipyard.domain.metric_series import intervals, parse_pod_scrape, series_for_all
from tests.support.images import script_image

pytestmark = pytest.mark.integration

SELECTOR = "shipyard.dev/test=pod-metrics"
# Every GET /metrics adds, per pod: 10 requests answered 200 and 1 answered 500 on /work
# (5 of the 11 within 0.1 s, 9 within 0.5 s), and one /metrics request, which a canary
# judge must leave out. /healthz answers the readiness probe; anything else is a 404.
SERVER = """\
import http.server, socket, threading
lock, scrapes = threading.Lock(), [0]
POD = socket.gethostname()

def requests(route, status, value):
    labels = f'method="GET",route="{route}",status="{status}",version="v1"'
    return f"demo_http_requests_total{{{labels}}} {value}"

def exposition(n):
    work = 'method="GET",route="/work",version="v1"'
    return "\\n".join([
        "# TYPE demo_http_requests_total counter",
        requests("/work", 200, 10 * n),
        requests("/work", 500, n),
        requests("/metrics", 200, n),
        "# TYPE demo_http_request_duration_seconds histogram",
        f'demo_http_request_duration_seconds_bucket{{le="0.1",{work}}} {5 * n}',
        f'demo_http_request_duration_seconds_bucket{{le="0.5",{work}}} {9 * n}',
        f'demo_http_request_duration_seconds_bucket{{le="+Inf",{work}}} {11 * n}',
        f'demo_http_request_duration_seconds_count{{{work}}} {11 * n}',
        "# TYPE demo_scrapes_total counter",
        f"demo_scrapes_total {n}",
        "# TYPE demo_pod_info gauge",
        f'demo_pod_info{{pod="{POD}"}} 1',
    ]) + "\\n"

class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/metrics":
            with lock:
                scrapes[0] += 1
                body = exposition(scrapes[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        elif self.path == "/healthz":
            body = b"ok\\n"
            self.send_response(200)
        else:
            body = b"not found\\n"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("", 8080), Metrics).serve_forever()
"""


@dataclass(frozen=True)
class Workload:
    kube: Kube
    namespace: str
    ready: frozenset[str]  # the pods that answer
    never_ready: str  # a Running pod whose readiness probe always fails


@pytest.fixture(scope="module")
def metrics_image(real_cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return script_image(tmp_path_factory.mktemp("metrics-server"), "metrics-server", SERVER)


def deployment(name: str, namespace: str, image: str, *, replicas: int,
               readiness_path: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name, "shipyard.dev/test": "pod-metrics"}
    probe = {"httpGet": {"path": readiness_path, "port": 8080}, "periodSeconds": 1}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "server", "image": image,
                                         "imagePullPolicy": "IfNotPresent",
                                         "ports": [{"name": "http", "containerPort": 8080}],
                                         "readinessProbe": probe}]}}}}


def phase_running(kube: Kube, namespace: str, selector: str, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pods = kube.pods(namespace, selector)
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
        if running:
            return str(running[0]["metadata"]["name"])
        time.sleep(0.5)
    raise AssertionError(f"no Running pod for {selector} in {namespace} after {seconds} s")


@pytest.fixture(scope="module")
def workload(real_cluster: Path, metrics_image: str) -> Iterator[Workload]:
    kube = Kube.from_kubeconfig(real_cluster)
    admin = KubeBootstrap(kube.client)
    namespace = f"pod-metrics-{uuid.uuid4().hex[:8]}"
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        admin.create(deployment("answers", namespace, metrics_image, replicas=2,
                                readiness_path="/healthz"))
        admin.create(deployment("never-ready", namespace, metrics_image, replicas=1,
                                readiness_path="/not-ready"))
        status = kube.wait_for_rollout(namespace, "answers", timeout_seconds=180)
        assert status.done, status.message
        never_ready = phase_running(kube, namespace, "app.kubernetes.io/name=never-ready")
        ready = frozenset(p["metadata"]["name"]
                          for p in kube.pods(namespace, "app.kubernetes.io/name=answers"))
        yield Workload(kube, namespace, ready, never_ready)
    finally:
        admin.delete_namespace(namespace)


def test_every_ready_pod_is_scraped_and_its_text_parses(workload):
    scraped = scrape_pods(workload.kube, workload.namespace, SELECTOR, port=8080)
    assert scraped.errors == ()
    assert {s.pod for s in scraped.scrapes} == workload.ready
    for scrape in scraped.scrapes:
        assert f'demo_pod_info{{pod="{scrape.pod}"}} 1' in scrape.text
        counters = parse_pod_scrape(scrape, "demo")
        n = counters.server_errors  # this pod's scrapes so far, this one included
        assert n >= 1 and counters.requests == 11 * n  # /metrics left out
        assert dict(counters.buckets) == {0.1: 5 * n, 0.5: 9 * n, float("inf"): 11 * n}
        assert scraped.at <= scrape.at <= time.monotonic()


def test_a_running_pod_that_is_not_ready_is_not_scraped(workload):
    scraped = scrape_pods(workload.kube, workload.namespace, SELECTOR, port=8080)
    assert workload.never_ready not in {s.pod for s in scraped.scrapes}
    assert workload.never_ready not in {e.pod for e in scraped.errors}


def test_pods_that_fail_to_answer_are_reported_not_fatal(workload):
    scraped = scrape_pods(workload.kube, workload.namespace, SELECTOR, port=8080,
                          path="no-such-page")
    assert scraped.scrapes == ()
    assert {e.pod for e in scraped.errors} == workload.ready
    assert all("404" in e.message for e in scraped.errors)
    refused = scrape_pods(workload.kube, workload.namespace, SELECTOR, port=9,
                          timeout_seconds=3)
    assert refused.scrapes == () and {e.pod for e in refused.errors} == workload.ready


def test_a_selector_without_pods_is_an_empty_round(workload):
    scraped = scrape_pods(workload.kube, workload.namespace, "shipyard.dev/test=none", port=80)
    assert (scraped.scrapes, scraped.errors) == ((), ())


def test_a_namespace_that_cannot_be_listed_is_an_error_of_the_round(workload):
    scraped = scrape_pods(workload.kube, workload.namespace, "not a selector!", port=80)
    assert scraped.scrapes == ()
    assert [e.pod for e in scraped.errors] == [""]
    assert "listing pods" in scraped.errors[0].message


def test_a_recording_gives_the_canary_series_of_the_pods(workload):
    demo = AppDescriptor("demo", 8080, "/healthz", "/healthz", (), metrics_prefix="demo",
                         canary_metrics=(CanaryMetric("error-rate", "error_rate"),
                                         CanaryMetric("latency-p50", "latency", quantile=0.5),
                                         CanaryMetric("request-rate", "rate")))

    async def record() -> list[Any]:
        async with start_recording(workload.kube, workload.namespace,
                                   "app.kubernetes.io/name=answers", port=8080,
                                   interval_seconds=0.5, duration_seconds=2.0) as recorder:
            return await recorder.wait()

    began = time.monotonic()
    rounds = asyncio.run(record())
    assert time.monotonic() - began < 2.0 + 5.0
    assert 3 <= len(rounds) <= 5  # ticks at 0, 0.5, ..., 2.0 s; an overrun skips one
    assert all({s.pod for s in r.scrapes} == workload.ready for r in rounds)
    series = series_for_all(demo, rounds)
    # Per interval, each of the two pods gained 11 requests (1 a 500), 5 within 0.1 s and
    # 9 within 0.5 s: p50 is rank 11 of 22, 1 into the 8 of (0.1, 0.5] = 0.15.
    assert series["error-rate"] == [pytest.approx(1 / 11)] * (len(rounds) - 1)
    assert series["latency-p50"] == [pytest.approx(0.15)] * (len(rounds) - 1)
    for counts, rate in zip(intervals("demo", rounds), series["request-rate"], strict=True):
        assert rate == pytest.approx(22 / counts.seconds)
        assert 0.45 <= counts.seconds < 1.5


def test_a_recording_stopped_early_ends_with_the_round_under_way(workload):
    async def stop_early() -> tuple[list[Any], float]:
        async with start_recording(workload.kube, workload.namespace,
                                   "app.kubernetes.io/name=answers", port=8080,
                                   interval_seconds=0.5, duration_seconds=60) as recorder:
            await asyncio.sleep(0.7)
        return recorder.rounds, time.monotonic() - recorder.started_at

    rounds, took = asyncio.run(stop_early())
    assert len(rounds) == 2  # at 0 and 0.5 s
    assert took < 0.7 + 5.0
