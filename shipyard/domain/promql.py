"""Canary metrics as PromQL: the query of each metric kind, a ``query`` metric's own
expression with its placeholders filled in, a range query's answer as a series, and the
link to a query's graph in Prometheus's UI.

The kinds mean what :mod:`shipyard.domain.metric_series` computes from pod scrapes, so
either provider gives the judge the same series: over each step of the window,

- ``error_rate``: requests answered 5xx over all requests;
- ``rate``: requests per second;
- ``latency``: the metric's quantile of the request duration histogram,

all summed over the track's pods, the operational routes left out. The series Prometheus
holds carry the labels the local stack's scrape configuration gives every pod's target
(:data:`TARGET_LABELS`): ``namespace``, ``pod``, ``app`` (``app.kubernetes.io/name``) and
``track`` (``shipyard.dev/track``); a Prometheus of one's own must label pods the same way
(the relabelling is in ``shipyard/stack/prometheus.py``).

A step's value is ``increase()`` over the step's range, which Prometheus extrapolates to
the range's edges: it differs from the scraped counters' exact gain by a fraction of a
request, never in kind. A step with no requests has no value (None), as with the pods.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from shipyard.domain.catalog import CanaryMetric
from shipyard.domain.metric_series import OPERATIONAL_ROUTES

__all__ = ["PLACEHOLDERS", "TARGET_LABELS", "InvalidQuery", "QueryScope", "duration",
           "graph_url", "kayenta_templates", "metric_query", "parse_window", "render_kayenta",
           "render_query", "series_from_matrix", "step_times"]

TARGET_LABELS = ("namespace", "pod", "app", "track")
"""The labels every scraped pod's series carry (from the pod's metadata)."""

PLACEHOLDERS = ("track", "namespace", "app", "interval")
"""What a ``query`` metric's expression may name as ``{{ name }}``: the track being
measured, its namespace, the app, and the step as a PromQL duration (``5s``)."""

_PLACEHOLDER = re.compile(r"{{\s*([^{}]*?)\s*}}")


class InvalidQuery(ValueError):
    """A query metric's expression or a range query's answer that cannot be used; the
    message names the metric and the fix."""


class QueryScope:
    """Which pods a query measures: one track of one app in one namespace, and the step
    (seconds) each point of the series covers."""

    __slots__ = ("app", "namespace", "step_seconds", "track")

    def __init__(self, *, app: str, namespace: str, track: str, step_seconds: float) -> None:
        if not step_seconds > 0 or not math.isfinite(step_seconds):
            raise ValueError(f"step_seconds must be positive and finite, not {step_seconds}")
        self.app, self.namespace, self.track = app, namespace, track
        self.step_seconds = step_seconds

    @property
    def values(self) -> dict[str, str]:
        return {"track": self.track, "namespace": self.namespace, "app": self.app,
                "interval": duration(self.step_seconds)}


def duration(seconds: float) -> str:
    """A PromQL duration for ``seconds``, in whole milliseconds where it needs them
    (``5s``, ``1500ms``)."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"a PromQL duration must be positive, not {seconds}")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def render_query(template: str, scope: QueryScope, *, metric: str = "") -> str:
    """``template`` with each ``{{ name }}`` of :data:`PLACEHOLDERS` replaced by the scope's
    value. Raises InvalidQuery naming an unknown placeholder (a typo would otherwise query
    a label value nobody has, and judge an empty series)."""
    values = scope.values

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise InvalidQuery(f"metric {metric or '?'}: unknown placeholder {{{{ {name} }}}}"
                               f" in its query; use one of "
                               + ", ".join(f"{{{{ {p} }}}}" for p in PLACEHOLDERS))
        return values[name]

    return _PLACEHOLDER.sub(fill, template)


def metric_query(metric: CanaryMetric, prefix: str, scope: QueryScope,
                 *, range_seconds: float | None = None) -> str:
    """The PromQL of one canary metric for one track: a ``query`` metric's own expression
    (placeholders filled in), or the kind's template over the app's standard series
    (``<prefix>_http_requests_total`` and ``<prefix>_http_request_duration_seconds``).
    ``range_seconds`` is the range each step's ``increase()`` reads (default: the step).
    """
    if metric.kind == "query":
        if not metric.query:
            raise InvalidQuery(f"metric {metric.name}: kind query needs a `query` (PromQL)")
        return render_query(metric.query, scope, metric=metric.name)
    prefix = prefix.replace("-", "_")
    window = duration(range_seconds or scope.step_seconds)
    matchers = (f'namespace="{_quote(scope.namespace)}",app="{_quote(scope.app)}",'
                f'track="{_quote(scope.track)}",route!~"{_routes_pattern()}"')
    requests = f"{prefix}_http_requests_total"
    if metric.kind == "error_rate":
        return (f'(sum(increase({requests}{{{matchers},status=~"5[0-9][0-9]"}}[{window}]))'
                f" or vector(0))"
                f" / sum(increase({requests}{{{matchers}}}[{window}]))")
    if metric.kind == "rate":
        return f"sum(rate({requests}{{{matchers}}}[{window}]))"
    if metric.kind == "latency":
        if metric.quantile is None:
            raise InvalidQuery(f"latency metric {metric.name} has no quantile")
        return (f"histogram_quantile({metric.quantile:g}, sum by (le) (increase("
                f"{prefix}_http_request_duration_seconds_bucket{{{matchers}}}[{window}])))")
    raise InvalidQuery(f"metric {metric.name}: unknown kind {metric.kind!r}")


def step_times(start: float, end: float, step: float) -> list[float]:
    """The evaluation times of a range query from ``start`` to ``end`` (Unix seconds)
    every ``step``, as Prometheus lays them out: ``start``, ``start + step``, ... up to
    ``end`` inclusive."""
    if not step > 0:
        raise ValueError(f"step must be positive, not {step}")
    count = math.floor((end - start) / step + 1e-9) + 1
    return [start + i * step for i in range(max(count, 0))]


def series_from_matrix(result: Sequence[Mapping[str, Any]], times: Sequence[float],
                       *, metric: str = "") -> list[float | None]:
    """A range query's ``data.result`` (a matrix) as one value per time of ``times``:
    None where the matrix has no point at that time, or its value is NaN or infinite.

    The query must come to one series (an aggregation); raises InvalidQuery naming the
    metric and the label sets when it comes to several."""
    if len(result) > 1:
        labels = "; ".join(str(dict(r.get("metric", {}))) for r in result[:3])
        raise InvalidQuery(f"metric {metric or '?'}: the query returned {len(result)} series "
                           f"({labels}...); aggregate it to one, e.g. with sum()")
    points: dict[int, float | None] = {}
    for row in result:
        for stamp, raw in row.get("values", ()):
            value = float(raw)
            points[round(float(stamp) * 1000)] = value if math.isfinite(value) else None
    return [points.get(round(t * 1000)) for t in times]


def graph_url(base_url: str, expression: str, *, start: float, end: float,
              step: float, page: str = "/graph") -> str:
    """A link to ``expression``'s graph in Prometheus's UI, over ``start``..``end`` (Unix
    seconds) at ``step``. ``page`` is the UI's graph page: ``/graph``, or Debian's
    Prometheus's ``/classic/graph`` (built without the React UI); both read these
    parameters."""
    end_at = datetime.fromtimestamp(end, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    query = urlencode({"g0.expr": expression, "g0.tab": "0",
                       "g0.range_input": duration(max(end - start, step)),
                       "g0.end_input": end_at, "g0.step_input": f"{step:g}"})
    return f"{base_url.rstrip('/')}{page}?{query}"


def _routes_pattern() -> str:
    return "|".join(re.escape(route).replace("\\", "\\\\")
                    for route in sorted(OPERATIONAL_ROUTES))


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def kayenta_templates(raw_config: Mapping[str, Any]) -> dict[str, str]:
    """Each metric's PromQL from a Kayenta canary config, as Kayenta's Prometheus metrics
    service reads it: ``query.customInlineTemplate``, ``PromQL:`` then the expression.
    Raises InvalidQuery naming a metric that has none (a ``metricName`` with label
    bindings is Kayenta's other form, which Shipyard does not build: write it inline)."""
    templates: dict[str, str] = {}
    for index, metric in enumerate(raw_config.get("metrics") or []):
        name = str(metric.get("name", f"metrics[{index}]")) if isinstance(metric, Mapping) \
            else f"metrics[{index}]"
        query = metric.get("query") if isinstance(metric, Mapping) else None
        inline = query.get("customInlineTemplate") if isinstance(query, Mapping) else None
        if not isinstance(inline, str) or not inline.startswith("PromQL:"):
            raise InvalidQuery(f"metrics[{index}] ({name}).query.customInlineTemplate: "
                               "judging from Prometheus needs each metric's PromQL there, "
                               "as 'PromQL:<expression>' with ${scope} for the track")
        templates[name] = inline.removeprefix("PromQL:").strip()
    return templates


def render_kayenta(template: str, scope: QueryScope, *, metric: str = "") -> str:
    """A Kayenta template for ``scope``: ``${scope}`` is the track, ``${location}`` the
    namespace; Shipyard's own ``{{ name }}`` placeholders work too."""
    expression = template.replace("${scope}", scope.track) \
        .replace("${location}", scope.namespace)
    return render_query(expression, scope, metric=metric)


def parse_window(text: str) -> tuple[float, float]:
    """``START..END`` as Unix seconds: each an ISO 8601 time (UTC unless it says) or Unix
    seconds. Raises ValueError saying what is wrong."""
    start_text, dots, end_text = text.partition("..")
    if not dots or not start_text or not end_text:
        raise ValueError(f"{text!r}: write the window as START..END, e.g. "
                         "2026-12-01T10:00:00Z..2026-12-01T13:00:00Z")
    start, end = _moment(start_text), _moment(end_text)
    if end <= start:
        raise ValueError(f"{text!r}: the window ends before it starts")
    return start, end


def _moment(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise ValueError(f"{text!r} is neither an ISO 8601 time nor Unix seconds") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
