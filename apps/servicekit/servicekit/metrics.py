"""Prometheus metrics of one service, on its own CollectorRegistry.

Per service rather than the global default registry, so that several apps in one process
(every test builds its own) never collide on metric names.

Every series carries a `version` label, so a canary judge scraping baseline and canary
side by side gets, per version:
- error rate: requests_total with status 5xx over all requests_total (leave out the
  routes in OPERATIONAL_PATHS: probes and scrapes are cheap and nearly always succeed);
- latency: quantiles of the request_duration_seconds histogram.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["DURATION_BUCKETS", "FaultKind", "ServiceMetrics"]

FaultKind = Literal["error", "latency", "readiness"]
FAULT_KINDS: tuple[FaultKind, ...] = ("error", "latency", "readiness")

# 5 ms to 10 s: fine steps where a healthy service answers, coarse ones where a sick one
# does, so both a 20 ms regression and a 3 s stall land in distinct buckets.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                    7.5, 10.0)
_PREFIX = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ServiceMetrics:
    """The request metrics every service exports, named `<prefix>_...`:

    - `<prefix>_http_requests_total{method,route,status,version}`
    - `<prefix>_http_request_duration_seconds{method,route,version}` (histogram)
    - `<prefix>_inflight_requests{version}`
    - `<prefix>_faults_injected_total{kind,version}` (kind: error, latency, readiness)
    - `<prefix>_build_info{version}` (always 1: which version this process runs)

    Apps add their own series with `counter`, `gauge` and `histogram`, which prefix the
    name and put `version` last among the labels.
    """

    def __init__(self, prefix: str, version: str) -> None:
        prefix = prefix.replace("-", "_")
        if not _PREFIX.match(prefix):
            raise ValueError(f"metric prefix {prefix!r} must match {_PREFIX.pattern}")
        self.prefix = prefix
        self.version = version
        self.registry = CollectorRegistry()
        self.requests = self.counter(
            "http_requests", "HTTP requests by method, route template and status code.",
            ["method", "route", "status"])
        self.duration = self.histogram(
            "http_request_duration_seconds", "HTTP request latency by method and route template.",
            ["method", "route"], buckets=DURATION_BUCKETS)
        self.inflight = self.gauge(
            "inflight_requests", "HTTP requests being served now.").labels(version=version)
        self.faults = self.counter(
            "faults_injected", "Faults injected on purpose (FAULT_* settings), by kind.",
            ["kind"])
        self.gauge("build_info", "Always 1; the version label says which build runs.").labels(
            version=version).set(1)
        # Materialise zero series so rate() and absent() work before the first fault.
        for kind in FAULT_KINDS:
            self.faults.labels(kind=kind, version=version)

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A counter `<prefix>_<name>_total` labelled (*labels, version)."""
        return Counter(f"{self.prefix}_{name}", documentation, [*labels, "version"],
                       registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge `<prefix>_<name>` labelled (*labels, version)."""
        return Gauge(f"{self.prefix}_{name}", documentation, [*labels, "version"],
                     registry=self.registry)

    def histogram(self, name: str, documentation: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = DURATION_BUCKETS) -> Histogram:
        """A histogram `<prefix>_<name>` labelled (*labels, version)."""
        return Histogram(f"{self.prefix}_{name}", documentation, [*labels, "version"],
                         registry=self.registry, buckets=buckets)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, route=route, status=str(status),
                            version=self.version).inc()
        self.duration.labels(method=method, route=route, version=self.version).observe(seconds)

    def fault_injected(self, kind: FaultKind) -> None:
        self.faults.labels(kind=kind, version=self.version).inc()

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)
