"""What one canary window's measurement costs through Prometheus, against the pods' scrape
through the API server, on the local cluster's real node, in the same run.

    .venv/bin/python bench/metrics_provider_cost.py [--pods 2] [--window 60] [--interval 5]

Needs the stack's cluster and Prometheus (`shipyard up --only k8s-binaries --only kubernetes
--only prometheus`, with SHIPYARD_STACK_HOME as the tests use). Deploys baseline and
canary tracks of a tiny metrics server (--pods each) in a namespace of its own, then
measures the same descriptor (error rate, p95 latency, request rate) over a window of
--window seconds at --interval, first through the pods' scrape, then through Prometheus,
one after the other so their CPU is told apart. For each: the CPU this process spent,
the CPU the API server (pods) or Prometheus (queries) spent, the requests it made and the
wall time the measurement took after its window. Prometheus's standing cost, its scrapes
of every pod every SHIPYARD_PROMETHEUS_SCRAPE_SECONDS and the pods' discovery, is
measured over the pods' window too and printed on its own line: it is paid whether a
canary runs or not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from shipyard.adapters.background import BackgroundProcess  # noqa: E402
from shipyard.adapters.kube import Kube  # noqa: E402
from shipyard.adapters.kube_bootstrap import KubeBootstrap  # noqa: E402
from shipyard.adapters.prometheus import Prometheus  # noqa: E402
from shipyard.domain.catalog import AppDescriptor, CanaryMetric  # noqa: E402
from shipyard.settings import Settings  # noqa: E402
from stages.canary_metrics import PodsProvider, PrometheusProvider, Window  # noqa: E402
from tests.integration.test_pod_metrics import SERVER  # noqa: E402
from tests.integration.test_prometheus_metrics import tracked  # noqa: E402
from tests.support.images import script_image  # noqa: E402

DESCRIPTOR = AppDescriptor(
    name="scraped", port=8080, liveness_path="/healthz", readiness_path="/healthz",
    depends_on=(), metrics_prefix="demo",
    canary_metrics=(CanaryMetric("error-rate", "error_rate", critical=True),
                    CanaryMetric("latency-p95", "latency", quantile=0.95),
                    CanaryMetric("request-rate", "rate", direction="decrease")))


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=2)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    settings = Settings()
    stack = settings.stack_dir
    admin_path = stack / "cluster" / "admin.kubeconfig"
    kube = Kube.from_kubeconfig(admin_path)
    admin = KubeBootstrap(kube.client)
    prometheus = Prometheus(settings.prometheus_base_url)
    assert prometheus.answers(), f"no Prometheus at {prometheus.base_url}: shipyard up"
    apiserver = BackgroundProcess("kube-apiserver", stack / "cluster" / "run").pid()
    prom_pid = BackgroundProcess("prometheus", stack / "prometheus").pid()
    discovery_pid = BackgroundProcess("prometheus-discovery", stack / "prometheus").pid()
    image = script_image(Path(tempfile.mkdtemp()), "metrics-server", SERVER)
    namespace = f"bench-metrics-{uuid.uuid4().hex[:6]}"
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        for track in ("baseline", "canary"):
            deployment = tracked(track, namespace, image)
            deployment["spec"]["replicas"] = args.pods
            admin.create(deployment)
        for track in ("baseline", "canary"):
            assert kube.wait_for_rollout(namespace, f"scraped-{track}",
                                         timeout_seconds=300).done
        time.sleep(10)  # Prometheus's discovery and first scrapes of the new pods
        window = Window(args.window, args.interval)
        print(f"{2 * args.pods} pods, a window of {args.window:g}s at {args.interval:g}s, "
              f"{len(DESCRIPTOR.canary_metrics)} metrics, Prometheus scraping every "
              f"{settings.prometheus_scrape_seconds:g}s")

        own, api, prom, disc = (time.process_time(), cpu_seconds(apiserver),
                                cpu_seconds(prom_pid), cpu_seconds(discovery_pid))
        began = time.monotonic()
        pods = asyncio.run(PodsProvider(kube).measure(DESCRIPTOR, namespace, window))
        pods_wall = time.monotonic() - began - args.window
        pods_own, pods_api = time.process_time() - own, cpu_seconds(apiserver) - api
        standing = (cpu_seconds(prom_pid) - prom + cpu_seconds(discovery_pid) - disc)
        seconds = time.monotonic() - began

        provider = PrometheusProvider(prometheus, settings.prometheus_scrape_seconds)
        own = time.process_time()
        began_queries: list[float] = []

        async def measure() -> object:
            task = asyncio.create_task(provider.measure(DESCRIPTOR, namespace, window))
            # The queries begin once the window and its last scrape have passed.
            await asyncio.sleep(args.window + 2 * settings.prometheus_scrape_seconds + 0.5)
            began_queries.append(cpu_seconds(prom_pid))
            return await task

        began = time.monotonic()
        result = asyncio.run(measure())
        prom_wall = time.monotonic() - began - args.window
        prom_own = time.process_time() - own
        prom_queries = cpu_seconds(prom_pid) - began_queries[0]
        assert getattr(result, "provider", "") == "prometheus"

        pods_total, prom_total = pods_own + pods_api, prom_own + prom_queries
        print(f"pods' scrape:  {pods.cost['requests']} requests through the API server; "
              f"CPU {pods_own:.2f}s here + {pods_api:.2f}s API server = {pods_total:.2f}s; "
              f"done {pods_wall:.2f}s after the window")
        print(f"Prometheus:    {provider.prometheus.spent.queries} range queries "
              f"({provider.prometheus.spent.seconds:.3f}s answering); CPU {prom_own:.2f}s "
              f"here + {prom_queries:.2f}s Prometheus = {prom_total:.2f}s; done "
              f"{prom_wall:.2f}s after the window (waits two scrapes for the last points)")
        print(f"ratio (window's measurement CPU, Prometheus / pods): "
              f"{prom_total / pods_total if pods_total else float('nan'):.3f}")
        print(f"Prometheus's standing cost (scrapes of every pod and the discovery, paid "
              f"with or without a canary): {standing / seconds * 100:.1f}% of a core")
    finally:
        admin.delete_namespace(namespace)


if __name__ == "__main__":
    main()
