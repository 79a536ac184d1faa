"""Small SVG charts for the reports, computed here and drawn by templates: two series over
time on one scale, and their distributions as box plots. Pure; missing points (None)
break a line rather than drop to zero.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["BoxPlot", "SeriesChart", "Timeline", "box_plots", "chaos_timeline",
           "series_chart"]


@dataclass(frozen=True)
class SeriesChart:
    width: int
    height: int
    paths: dict[str, str]
    """Per series name, an SVG path ``d`` (``M`` starts each unbroken run of points)."""
    low: float
    high: float


@dataclass(frozen=True)
class BoxPlot:
    name: str
    y: int
    whisker_low: float
    q1: float
    median: float
    q3: float
    whisker_high: float
    """All in pixels along the x axis."""
    count: int


def _bounds(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if low == high:  # a flat series still gets a visible scale
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    return low, high


def series_chart(series: dict[str, Sequence[float | None]], *, width: int = 320,
                 height: int = 96, pad: int = 4) -> SeriesChart | None:
    """Both series on one y scale over their point index; None when no point exists."""
    points = [v for values in series.values() for v in values if v is not None]
    if not points:
        return None
    low, high = _bounds(points)
    longest = max(len(values) for values in series.values())
    step = (width - 2 * pad) / max(1, longest - 1)
    paths: dict[str, str] = {}
    for name, values in series.items():
        parts: list[str] = []
        pen_up = True
        for i, value in enumerate(values):
            if value is None:
                pen_up = True
                continue
            x = pad + i * step
            y = pad + (height - 2 * pad) * (1 - (value - low) / (high - low))
            parts.append(f"{'M' if pen_up else 'L'}{x:.1f},{y:.1f}")
            pen_up = False
        paths[name] = " ".join(parts)
    return SeriesChart(width, height, paths, low, high)


def box_plots(series: dict[str, Sequence[float | None]], *, width: int = 320,
              row_height: int = 28, pad: int = 4) -> tuple[list[BoxPlot], float, float] | None:
    """One box plot per series (Tukey's whiskers: the furthest points within 1.5 IQR),
    on one shared x scale; with that scale's low and high. None without points."""
    present = {n: sorted(v for v in values if v is not None) for n, values in series.items()}
    everything = [v for values in present.values() for v in values]
    if not everything:
        return None
    low, high = _bounds(everything)

    def x(value: float) -> float:
        return round(pad + (width - 2 * pad) * (value - low) / (high - low), 1)

    plots = []
    for row, (name, values) in enumerate(present.items()):
        if not values:
            continue
        if len(values) >= 2:
            q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        else:
            q1 = median = q3 = values[0]
        reach = 1.5 * (q3 - q1)
        inside = [v for v in values if q1 - reach <= v <= q3 + reach]
        plots.append(BoxPlot(name, pad + row * row_height, x(min(inside)), x(q1), x(median),
                             x(q3), x(max(inside)), len(values)))
    return plots, low, high


@dataclass(frozen=True)
class Timeline:
    width: int
    spans: list[dict[str, object]]
    kills: list[dict[str, object]]


def chaos_timeline(report: Mapping[str, object], *, width: int = 600,
                   pad: int = 4) -> Timeline | None:
    """A chaos report's windows (before, settling, after) and kills on one time axis."""
    parts: list[tuple[str, dict[str, float]]] = []
    for kind in ("before", "transition", "after"):
        part = report.get(kind)
        if isinstance(part, dict) and isinstance(part.get("window"), dict):
            parts.append((kind, part["window"]))
    listed = report.get("kills")
    kills = [k for k in listed if isinstance(k, dict)] if isinstance(listed, list) else []
    if not parts:
        return None
    end = max([w["end"] for _, w in parts] + [float(k["at_seconds"]) for k in kills])
    scale = (width - 2 * pad) / (end or 1)
    labels = {"before": "before", "transition": "settling", "after": "after"}
    spans = [{"kind": kind, "label": labels[kind], "x": round(pad + w["start"] * scale, 1),
              "width": round(max(1.0, (w["end"] - w["start"]) * scale), 1)}
             for kind, w in parts]
    marks = [{"x": round(pad + float(k["at_seconds"]) * scale, 1),
              "label": str(k["pod"]).rsplit("-", 1)[-1]} for k in kills]
    return Timeline(width, spans, marks)
