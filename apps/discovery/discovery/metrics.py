"""The registry's own series, beside servicekit's request metrics on the same registry."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter
from servicekit.metrics import ServiceMetrics


class RegistryMetrics:
    """`discovery_registered_instances{version}` and `discovery_evictions_total{version}`."""

    def __init__(self, metrics: ServiceMetrics, instance_count: Callable[[], int]) -> None:
        self.version = metrics.version
        self.evictions: Counter = metrics.counter(
            "evictions", "Instances removed because their lease expired.")
        instances = metrics.gauge("registered_instances", "Instances currently registered.")
        # Read at scrape time so the gauge can never drift from the registry.
        instances.labels(version=self.version).set_function(lambda: float(instance_count()))
        # Materialise the zero series so absent() alerts and rate() work from the start.
        self.evictions.labels(version=self.version)

    def evicted(self, count: int) -> None:
        self.evictions.labels(version=self.version).inc(count)
