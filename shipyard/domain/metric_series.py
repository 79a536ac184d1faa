"""Canary metrics as time series, from successive ``/metrics`` scrapes of one track's pods.

The pods of a track (baseline or canary) are scraped in rounds; each pair of consecutive
rounds is an interval, and each interval gets one value per canary metric, from what the
pods' counters gained in it, summed over the pods:

- ``error_rate``: requests answered 5xx over all requests (None with no requests);
- ``rate``: requests per second;
- ``latency``: the metric's quantile of the request duration histogram, interpolated
  within a bucket as Prometheus's ``histogram_quantile`` does (None with no observations).

Requests to the operational routes (probes, scrapes, ``/version``) are left out: they are
cheap, nearly always succeed and would dilute a canary's errors and latency.

What a pod gained in an interval is its counters now minus its counters at its last
successful scrape, as Prometheus's ``increase()`` reads a counter, with these rules:

- The first round is the baseline: what pods counted before it belongs to no interval.
- A pod first seen after the first round counts from zero (a new or replacement pod's
  counters start at zero). A pod that merely failed its earlier scrapes has its earlier
  counts land in the interval where it is first seen.
- A pod missing from a round (gone, or its scrape failed) contributes nothing to that
  interval; if it comes back, what it counted meanwhile lands in the interval it comes
  back in, so the sum over all intervals loses nothing.
- A restart resets a pod's counters. When any of its series went down, vanished, or was
  created anew (a changed ``_created`` timestamp), the pod counts as reset and its
  current values are the interval's gain. A restart followed by more traffic than before
  it, exposed without ``_created``, cannot be told from no restart, as in Prometheus.
- An interval to which no pod contributed has no values (None), not zeros.

Times are whatever clock the scraper used (``shipyard.adapters.pod_metrics`` uses
``time.monotonic``); only differences matter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from shipyard.domain.catalog import AppDescriptor, CanaryMetric

__all__ = [
    "OPERATIONAL_ROUTES",
    "IntervalCounts",
    "InvalidScrape",
    "PodCounters",
    "PodScrape",
    "ScrapeError",
    "ScrapeRound",
    "combine",
    "histogram_quantile",
    "intervals",
    "metric_value",
    "parse_pod_scrape",
    "series_for",
    "series_for_all",
]

# servicekit.routes.OPERATIONAL_PATHS (apps/servicekit); the route label holds the route
# template, which for these is the path itself. A unit test keeps the two equal.
OPERATIONAL_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/version"})


@dataclass(frozen=True, slots=True)
class PodScrape:
    """What pod ``pod`` answered to ``GET /metrics``, received at ``at``."""

    pod: str
    at: float
    text: str


@dataclass(frozen=True, slots=True)
class ScrapeError:
    """A scrape that failed at ``at``; ``pod`` is "" when listing the pods failed."""

    pod: str
    at: float
    message: str


@dataclass(frozen=True, slots=True)
class ScrapeRound:
    """One scrape of every Running and Ready pod of a selector, begun at ``at``."""

    at: float
    scrapes: tuple[PodScrape, ...]
    errors: tuple[ScrapeError, ...] = ()


class InvalidScrape(ValueError):
    """A pod's ``/metrics`` answer that is not Prometheus text; the message names it."""


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class PodCounters:
    """One pod's request metrics at one moment.

    ``series`` holds every request counter and duration histogram series (operational
    routes included: probes make a restart show) for telling a reset; ``created`` their
    ``_created`` timestamps where exposed. ``requests``, ``server_errors`` and ``buckets``
    (upper bound to cumulative count) are summed over the series of the other routes.
    """

    at: float
    series: Mapping[SeriesKey, float]
    created: Mapping[SeriesKey, float]
    requests: float
    server_errors: float
    buckets: Mapping[float, float]


@dataclass(frozen=True, slots=True)
class IntervalCounts:
    """What a track's pods counted between two rounds, operational routes left out.

    ``buckets`` are (upper bound, cumulative count) pairs in ascending order, the last
    one ``+Inf``; empty when no pod exposed the histogram. ``pods`` is how many pods
    contributed.
    """

    start: float
    end: float
    pods: int
    requests: float
    server_errors: float
    buckets: tuple[tuple[float, float], ...]

    @property
    def seconds(self) -> float:
        return self.end - self.start


def parse_pod_scrape(scrape: PodScrape, prefix: str) -> PodCounters:
    """Read the request series of app ``prefix`` (``metrics_prefix``) from one scrape.

    Raises InvalidScrape when the text is not Prometheus' text format.
    """
    prefix = prefix.replace("-", "_")
    requests_name = f"{prefix}_http_requests_total"
    histogram = f"{prefix}_http_request_duration_seconds"
    names = {requests_name, f"{histogram}_bucket", f"{histogram}_count"}
    created_names = {f"{prefix}_http_requests_created": requests_name,
                     f"{histogram}_created": f"{histogram}_count"}
    series: dict[SeriesKey, float] = {}
    created: dict[SeriesKey, float] = {}
    requests = server_errors = 0.0
    buckets: dict[float, float] = {}
    try:
        for family in text_string_to_metric_families(scrape.text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name in created_names:
                    created[_key(created_names[sample.name], labels)] = sample.value
                    continue
                if sample.name not in names:
                    continue
                series[_key(sample.name, labels)] = sample.value
                if labels.get("route") in OPERATIONAL_ROUTES:
                    continue
                if sample.name == requests_name:
                    requests += sample.value
                    if _is_server_error(labels.get("status", "")):
                        server_errors += sample.value
                elif sample.name.endswith("_bucket"):
                    bound = float(labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidScrape(f"pod {scrape.pod}: /metrics is not Prometheus text: {err}") from err
    return PodCounters(scrape.at, series, created, requests, server_errors, buckets)


def intervals(prefix: str, rounds: Sequence[ScrapeRound]) -> list[IntervalCounts]:
    """One IntervalCounts per pair of consecutive rounds (``len(rounds) - 1`` of them),
    by the rules in this module's docstring. Raises InvalidScrape, naming the pod, for a
    scrape that is not Prometheus text."""
    last: dict[str, PodCounters] = {}
    result: list[IntervalCounts] = []
    for index, round_ in enumerate(rounds):
        pods = 0
        requests = server_errors = 0.0
        buckets: dict[float, float] = {}
        for scrape in round_.scrapes:
            now = parse_pod_scrape(scrape, prefix)
            before = last.get(scrape.pod)
            last[scrape.pod] = now
            if index == 0:
                continue
            gained = _gain(before, now)
            pods += 1
            requests += gained.requests
            server_errors += gained.server_errors
            for bound, count in gained.buckets.items():
                buckets[bound] = buckets.get(bound, 0.0) + count
        if index > 0:
            result.append(IntervalCounts(rounds[index - 1].at, round_.at, pods, requests,
                                         server_errors, tuple(sorted(buckets.items()))))
    return result


def combine(counts: Sequence[IntervalCounts]) -> IntervalCounts:
    """Consecutive intervals as one, from the first's start to the last's end (``pods``
    is the most any of them had)."""
    if not counts:
        raise ValueError("combine needs at least one interval")
    buckets: dict[float, float] = {}
    for interval in counts:
        for bound, count in interval.buckets:
            buckets[bound] = buckets.get(bound, 0.0) + count
    return IntervalCounts(counts[0].start, counts[-1].end, max(c.pods for c in counts),
                          sum(c.requests for c in counts),
                          sum(c.server_errors for c in counts),
                          tuple(sorted(buckets.items())))


def metric_value(metric: CanaryMetric, counts: IntervalCounts) -> float | None:
    """The canary metric's value over ``counts``; None when there is nothing to judge
    (no pod contributed, no requests, no observations, or a ``query`` metric, whose PromQL
    only Prometheus can answer)."""
    if counts.pods == 0 or metric.kind == "query":
        # A query metric is PromQL: only Prometheus answers it (no data from the pods).
        return None
    if metric.kind == "error_rate":
        return counts.server_errors / counts.requests if counts.requests > 0 else None
    if metric.kind == "rate":
        return counts.requests / counts.seconds if counts.seconds > 0 else None
    if metric.kind == "latency":
        if metric.quantile is None:
            raise ValueError(f"latency metric {metric.name} has no quantile")
        return histogram_quantile(metric.quantile, counts.buckets)
    raise ValueError(f"metric {metric.name}: unknown kind {metric.kind!r}")


def series_for(metric: CanaryMetric, prefix: str,
               rounds: Sequence[ScrapeRound]) -> list[float | None]:
    """The metric's value for each interval between consecutive rounds, in order."""
    return [metric_value(metric, counts) for counts in intervals(prefix, rounds)]


def series_for_all(descriptor: AppDescriptor,
                   rounds: Sequence[ScrapeRound]) -> dict[str, list[float | None]]:
    """``series_for`` of every canary metric of the app, keyed by the metric's name (the
    scrapes are read once)."""
    counts = intervals(descriptor.metrics_prefix or descriptor.name, rounds)
    return {metric.name: [metric_value(metric, c) for c in counts]
            for metric in descriptor.canary_metrics}


def histogram_quantile(quantile: float,
                       buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus's ``histogram_quantile`` over (upper bound, cumulative count) pairs.

    The rank ``quantile * total`` falls in the first bucket whose cumulative count reaches
    it; the result is interpolated linearly between that bucket's lower bound (the
    previous upper bound, or 0 for the first bucket) and its upper bound. A rank in the
    ``+Inf`` bucket gives the highest finite upper bound. None where Prometheus gives NaN:
    no ``+Inf`` bucket, fewer than two buckets, or no observations. Counts that go down
    from one bucket to the next are raised to the running maximum first, as Prometheus
    does.
    """
    if math.isnan(quantile):
        return None
    if quantile < 0:
        return -math.inf
    if quantile > 1:
        return math.inf
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    bounds = [bound for bound, _ in ordered]
    counts: list[float] = []
    for _, count in ordered:
        counts.append(max(count, counts[-1]) if counts else count)
    total = counts[-1]
    if total <= 0:
        return None
    rank = quantile * total
    chosen = next((i for i in range(len(counts) - 1) if counts[i] >= rank), len(counts) - 1)
    if chosen == len(counts) - 1:
        return bounds[-2]
    if chosen == 0 and bounds[0] <= 0:
        return bounds[0]
    lower = bounds[chosen - 1] if chosen > 0 else 0.0
    below = counts[chosen - 1] if chosen > 0 else 0.0
    in_bucket = counts[chosen] - below
    if in_bucket <= 0:
        return lower
    return lower + (bounds[chosen] - lower) * (rank - below) / in_bucket


@dataclass(frozen=True, slots=True)
class _Gain:
    requests: float
    server_errors: float
    buckets: Mapping[float, float]


def _gain(before: PodCounters | None, now: PodCounters) -> _Gain:
    if before is None or _was_reset(before, now):
        return _Gain(now.requests, now.server_errors, now.buckets)
    return _Gain(now.requests - before.requests, now.server_errors - before.server_errors,
                 {bound: count - before.buckets.get(bound, 0.0)
                  for bound, count in now.buckets.items()})


def _was_reset(before: PodCounters, now: PodCounters) -> bool:
    for key, value in before.series.items():
        if key not in now.series or now.series[key] < value:
            return True
    return any(key in now.created and now.created[key] != stamp
               for key, stamp in before.created.items())


def _key(name: str, labels: Mapping[str, str]) -> SeriesKey:
    return name, tuple(sorted(labels.items()))


def _is_server_error(status: str) -> bool:
    return len(status) == 3 and status.startswith("5") and status.isdigit()
