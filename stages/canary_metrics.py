"""Where the canary's metrics come from: a metrics provider measures each track over the
analysis window and hands the judge one series per canary metric.

Two providers, giving the judge the same series (the kinds mean the same, see
:mod:`shipyard.domain.promql`):

- ``prometheus``: PromQL range queries over the window, one per metric and track, at one
  point per interval, against the stack's Prometheus or ``SHIPYARD_PROMETHEUS_URL``. The
  report links each metric to its graph for the window. Metrics of kind ``query`` are
  only answered here.
- ``pods``: each track's pods scraped through the API server's pod proxy every interval
  (:mod:`shipyard.adapters.pod_metrics`), the fallback when no Prometheus answers.

``SHIPYARD_METRICS_PROVIDER`` chooses (``auto``: Prometheus whenever it answers).
``SHIPYARD_CANARY_CROSS_CHECK`` measures the same window through the other provider too,
so both verdicts and both costs can be compared on one canary.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.kube import Kube
from shipyard.adapters.pod_metrics import start_recording
from shipyard.adapters.prometheus import Prometheus, PrometheusError
from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.labels import APP_LABEL, TRACK_LABEL, label_selector
from shipyard.domain.metric_series import series_for_all
from shipyard.domain.promql import (
    InvalidQuery,
    QueryScope,
    graph_url,
    metric_query,
    render_kayenta,
    series_from_matrix,
    step_times,
)
from shipyard.settings import Settings
from stages.runtime import StageFailure

__all__ = ["TRACKS", "Measurement", "MetricsProvider", "PodsProvider", "PrometheusProvider",
           "Window", "choose_providers", "judge_window_series"]

TRACKS = ("baseline", "canary")

Series = dict[str, list[float | None]]


@dataclass(frozen=True, slots=True)
class Window:
    """The analysis window: ``seconds`` long, a point every ``interval`` seconds."""

    seconds: float
    interval: float


@dataclass
class Measurement:
    """What one provider measured: per track, one series per metric; per metric and
    track, where to see it (a graph link, Prometheus only); what it cost; and any notes
    (pod errors, metrics it cannot answer)."""

    provider: str
    series: dict[str, Series]
    links: dict[str, dict[str, str]] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    window: dict[str, float] = field(default_factory=dict)


class MetricsProvider(Protocol):
    """Measures both tracks of ``app`` in ``namespace`` over a window that begins now."""

    name: str

    async def prepare(self, descriptor: AppDescriptor, namespace: str,
                      replicas: int) -> None:
        """Return once the provider can measure each track's ``replicas`` pods from the
        window's first point on (called during the warm-up)."""

    async def measure(self, descriptor: AppDescriptor, namespace: str,
                      window: Window) -> Measurement: ...


@dataclass
class PodsProvider:
    """Each track's pods scraped through the API server's pod proxy every interval."""

    kube: Kube
    name: str = "pods"

    async def prepare(self, descriptor: AppDescriptor, namespace: str,
                      replicas: int) -> None:
        """Nothing to wait for: the first round scrapes the pods as they are."""

    async def measure(self, descriptor: AppDescriptor, namespace: str,
                      window: Window) -> Measurement:
        started, began = time.time(), time.process_time()
        recorders = {t: start_recording(
            self.kube, namespace, label_selector({APP_LABEL: descriptor.name,
                                                  TRACK_LABEL: t}),
            port=descriptor.port, interval_seconds=window.interval,
            duration_seconds=window.seconds) for t in TRACKS}
        rounds = {t: list(await recorders[t].wait()) for t in TRACKS}
        series = {t: series_for_all(descriptor, rounds[t]) for t in TRACKS}
        scrapes = sum(len(r.scrapes) + len(r.errors) for t in TRACKS for r in rounds[t])
        notes = [f"{t}: {len(rounds[t])} scrape rounds "
                 f"({sum(len(r.errors) for r in rounds[t])} pod errors)" for t in TRACKS]
        unanswered = [m.name for m in descriptor.canary_metrics if m.kind == "query"]
        if unanswered:
            notes.append(f"{', '.join(unanswered)}: PromQL metrics, which only Prometheus "
                         "answers: no data from the pods")
        return Measurement(self.name, series, cost={
            "requests": scrapes, "process_cpu_seconds": round(time.process_time() - began, 4)},
            notes=notes, window={"start": started, "end": time.time(),
                                 "step": window.interval})


@dataclass
class PrometheusProvider:
    """PromQL range queries over the window once it has passed (and Prometheus has
    scraped its end)."""

    prometheus: Prometheus
    scrape_seconds: float
    name: str = "prometheus"
    ready_within_seconds: float = 60.0

    async def prepare(self, descriptor: AppDescriptor, namespace: str,
                      replicas: int) -> None:
        """Wait until Prometheus scrapes ``replicas`` pods of each track (its discovery
        learns of new pods every few seconds), then two scrapes more, so the window's
        first step has the two samples ``increase()`` needs. Without this a track's first
        points would be missing, and a missing error rate is judged as 0.

        Fails with ``MetricsUnavailable`` when it does not within
        ``ready_within_seconds``: a Prometheus that does not label pods as the stack's
        does (namespace, app, track) never will."""
        query = (f'count by (track) (up{{namespace="{namespace}",app="{descriptor.name}",'
                 f'track=~"{"|".join(TRACKS)}"}} == 1)')
        deadline = time.monotonic() + self.ready_within_seconds
        scraped: dict[str, int] = {}
        while True:
            try:
                answer = await run_blocking(self.prometheus.query, query)
            except PrometheusError as err:
                raise StageFailure("MetricsUnavailable", str(err)) from err
            scraped = {str(row.get("metric", {}).get("track")): int(float(row["value"][1]))
                       for row in answer}
            if all(scraped.get(track, 0) >= replicas for track in TRACKS):
                break
            if time.monotonic() > deadline:
                raise StageFailure(
                    "MetricsUnavailable",
                    f"Prometheus at {self.prometheus.base_url} scrapes "
                    + ", ".join(f"{scraped.get(t, 0)} of {replicas} {t} pod(s)"
                                for t in TRACKS)
                    + f" after {self.ready_within_seconds:g}s: see its /targets page; its "
                    "pods' targets need the labels namespace, app and track (the stack's "
                    "relabelling, shipyard/stack/prometheus.py), or choose "
                    "SHIPYARD_METRICS_PROVIDER=pods")
            await asyncio.sleep(0.5)
        await asyncio.sleep(2 * self.scrape_seconds)

    async def measure(self, descriptor: AppDescriptor, namespace: str,
                      window: Window) -> Measurement:
        step = window.interval
        start = round(time.time(), 3)
        await asyncio.sleep(window.seconds)
        # The window's last point needs the scrapes up to its end, and Prometheus has
        # them one scrape (and its ingestion) later.
        await asyncio.sleep(2 * self.scrape_seconds + 0.5)
        times = step_times(start + step, start + window.seconds, step)
        prefix = descriptor.metrics_prefix or descriptor.name
        # increase() needs two samples in its range: never less than two scrapes.
        range_seconds = max(step, 2 * self.scrape_seconds)
        series: dict[str, Series] = {t: {} for t in TRACKS}
        links: dict[str, dict[str, str]] = {}
        began = time.process_time()
        page = await run_blocking(self.prometheus.graph_page)
        spent_before = self.prometheus.spent.seconds
        queries_before = self.prometheus.spent.queries
        for metric in descriptor.canary_metrics:
            links[metric.name] = {}
            for track in TRACKS:
                scope = QueryScope(app=descriptor.name, namespace=namespace, track=track,
                                   step_seconds=step)
                try:
                    expression = metric_query(metric, prefix, scope,
                                              range_seconds=range_seconds)
                    matrix = await run_blocking(self.prometheus.query_range, expression,
                                                start=times[0], end=times[-1], step=step)
                    values = series_from_matrix(matrix, times, metric=metric.name)
                except InvalidQuery as err:
                    raise StageFailure("InvalidCanaryMetric", str(err)) from err
                except PrometheusError as err:
                    raise StageFailure("MetricsUnavailable",
                                       f"metric {metric.name} ({track}): {err}") from err
                series[track][metric.name] = values
                links[metric.name][track] = graph_url(
                    self.prometheus.base_url, expression, start=start,
                    end=start + window.seconds, step=step, page=page)
        return Measurement(self.name, series, links, cost={
            "queries": self.prometheus.spent.queries - queries_before,
            "seconds": round(self.prometheus.spent.seconds - spent_before, 4),
            "process_cpu_seconds": round(time.process_time() - began, 4)},
            window={"start": start, "end": start + window.seconds, "step": step})


async def choose_providers(settings: Settings, kube: Kube) -> list[MetricsProvider]:
    """The provider the settings choose, first, then (with the cross-check on) the other.

    ``auto`` takes Prometheus when it answers, else the pods; ``prometheus`` insists on it
    and fails with ``MetricsUnavailable`` when it does not answer."""
    prometheus = Prometheus(settings.prometheus_base_url)
    answers = await run_blocking(prometheus.answers)
    if settings.metrics_provider == "prometheus" and not answers:
        raise StageFailure("MetricsUnavailable",
                           f"SHIPYARD_METRICS_PROVIDER is prometheus, and no Prometheus "
                           f"answers at {prometheus.base_url}: start it (`shipyard up`), "
                           "point SHIPYARD_PROMETHEUS_URL at one, or choose auto or pods")
    pods: MetricsProvider = PodsProvider(kube)
    chosen: list[MetricsProvider] = [pods]
    if answers and settings.metrics_provider != "pods":
        chosen = [PrometheusProvider(prometheus, settings.prometheus_scrape_seconds), pods]
    elif answers:
        chosen = [pods, PrometheusProvider(prometheus, settings.prometheus_scrape_seconds)]
    return chosen if settings.canary_cross_check else chosen[:1]


def judge_window_series(prometheus: Prometheus, templates: dict[str, str], *,
                        scopes: dict[str, QueryScope], start: float, end: float
                        ) -> tuple[dict[str, Series], dict[str, dict[str, str]]]:
    """A past window's series from Prometheus, for backtesting: each metric's Kayenta
    template (``${scope}``, ``{{ track }}``...) per track of ``scopes``, one point per
    scope's step from ``start + step`` to ``end``. Returns the series per track and each
    metric's graph link per track. Raises InvalidQuery or PrometheusError."""
    series: dict[str, Series] = {track: {} for track in scopes}
    links: dict[str, dict[str, str]] = {name: {} for name in templates}
    page = prometheus.graph_page()
    for track, scope in scopes.items():
        step = scope.step_seconds
        times = step_times(start + step, end, step)
        if not times:
            raise InvalidQuery(f"the window holds no step of {step:g} s")
        for name, template in templates.items():
            expression = render_kayenta(template, scope, metric=name)
            matrix = prometheus.query_range(expression, start=times[0], end=times[-1],
                                            step=step)
            series[track][name] = series_from_matrix(matrix, times, metric=name)
            links[name][track] = graph_url(prometheus.base_url, expression, start=start,
                                           end=end, step=step, page=page)
    return series, links
