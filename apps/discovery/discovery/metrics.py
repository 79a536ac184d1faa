"""Prometheus metrics on a per-app CollectorRegistry.

Per-app rather than the global default registry so that several apps in one process
(every test builds its own) never collide on duplicate metric names.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Every series carries a `version` label so dashboards can split by release."""

    def __init__(self, version: str, instance_count: Callable[[], int]) -> None:
        self.version = version
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "discovery_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status", "version"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "discovery_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route", "version"],
            registry=self.registry,
        )
        self.evictions = Counter(
            "discovery_evictions",
            "Instances removed because their lease expired.",
            ["version"],
            registry=self.registry,
        )
        instances = Gauge(
            "discovery_registered_instances",
            "Instances currently registered.",
            ["version"],
            registry=self.registry,
        )
        # Read at scrape time so the gauge can never drift from the registry.
        instances.labels(version=version).set_function(lambda: float(instance_count()))
        # Materialise the zero series so absent() alerts and rate() work from the start.
        self.evictions.labels(version=version)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status), self.version).inc()
        self.latency.labels(method, route, self.version).observe(seconds)

    def evicted(self, count: int) -> None:
        self.evictions.labels(version=self.version).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
