"""The gateway's upstream series, beside servicekit's request metrics on the same registry.

Every series carries servicekit's `version` label: the gateway's own build. The version
of the instance that answered is `upstream_version`, so a canary's error rate can be read
from the gateway's side too:

    sum by (upstream_version) (rate(gateway_upstream_requests_total{app="data",
        status!~"[1-4].."}[1m]))
      / sum by (upstream_version) (rate(gateway_upstream_requests_total{app="data"}[1m]))
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from servicekit import ServiceMetrics

from gateway.breaker import BreakerState
from gateway.outcome import Outcome
from gateway.upstreams import Upstream, Upstreams

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    """- `gateway_upstream_requests_total{app,status,upstream_version,version}`: one per
      attempt; status is the instance's status code, or the failure (connect_error,
      timeout, protocol_error, too_large, rejected);
    - `gateway_upstream_duration_seconds{app,version}`: each attempt's duration;
    - `gateway_upstream_retries_total{app,version}`;
    - `gateway_upstream_circuit_open{app,instance,version}`: 1 while the instance's
      breaker is open or half-open, else 0;
    - `gateway_upstream_outstanding_requests{app,instance,version}`.
    The last two are read from the upstream table at scrape time, so an instance that
    left discovery leaves them too.
    """

    def __init__(self, metrics: ServiceMetrics, upstreams: Upstreams) -> None:
        self.version = metrics.version
        self.requests: Counter = metrics.counter(
            "upstream_requests", "Attempts at upstream instances, by app, outcome and the "
            "instance's version.", ["app", "status", "upstream_version"])
        self.duration: Histogram = metrics.histogram(
            "upstream_duration_seconds", "Duration of each attempt at an upstream instance.",
            ["app"])
        self.retries: Counter = metrics.counter(
            "upstream_retries", "Attempts repeated on another instance.", ["app"])
        metrics.registry.register(_UpstreamStateCollector(
            f"{metrics.prefix}_upstream", metrics.version, upstreams))

    def attempted(self, upstream: Upstream, outcome: Outcome, seconds: float) -> None:
        self.requests.labels(app=upstream.app, status=outcome.label,
                             upstream_version=upstream.version, version=self.version).inc()
        self.duration.labels(app=upstream.app, version=self.version).observe(seconds)

    def retried(self, app: str) -> None:
        self.retries.labels(app=app, version=self.version).inc()


class _UpstreamStateCollector(Collector):
    def __init__(self, prefix: str, version: str, upstreams: Upstreams) -> None:
        self.prefix = prefix
        self.version = version
        self.upstreams = upstreams

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        circuit_open, outstanding = self._families()
        for app in self.upstreams.known_apps():
            for upstream in self.upstreams.of(app):
                labels = [app, upstream.instance_id, self.version]
                closed = upstream.breaker.state is BreakerState.CLOSED
                circuit_open.add_metric(labels, 0.0 if closed else 1.0)
                outstanding.add_metric(labels, float(upstream.outstanding))
        yield circuit_open
        yield outstanding

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["app", "instance", "version"]
        return (
            GaugeMetricFamily(f"{self.prefix}_circuit_open",
                              "1 while the instance's circuit breaker keeps traffic away "
                              "(open or half-open), else 0.", labels=labels),
            GaugeMetricFamily(f"{self.prefix}_outstanding_requests",
                              "Requests sent to the instance and not yet answered.",
                              labels=labels),
        )
