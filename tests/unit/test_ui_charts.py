"""The report charts' geometry: one scale for both series, gaps for missing points, box
plots with Tukey's whiskers."""

from __future__ import annotations

from ui.charts import box_plots, chaos_timeline, series_chart


def test_both_series_share_one_scale_and_a_missing_point_breaks_the_line() -> None:
    chart = series_chart({"baseline": [0, 10], "canary": [5, None, 10]}, width=208,
                         height=108, pad=4)
    assert chart is not None
    assert (chart.low, chart.high) == (0, 10)
    # x steps over the longest series (3 points over 200 px); y is flipped (SVG grows down).
    assert chart.paths["baseline"] == "M4.0,104.0 L104.0,4.0"
    assert chart.paths["canary"] == "M4.0,54.0 M204.0,4.0"


def test_a_flat_series_still_gets_a_scale_and_no_points_no_chart() -> None:
    chart = series_chart({"baseline": [3, 3, 3]})
    assert chart is not None and chart.low < 3 < chart.high
    assert series_chart({"baseline": [None], "canary": []}) is None


def test_box_plots_use_quartiles_and_whiskers_within_one_and_a_half_iqr() -> None:
    found = box_plots({"baseline": [1, 2, 3, 4, 5, 100], "canary": [2, 3, 4, None]},
                      width=208, pad=4)
    assert found is not None
    plots, low, high = found
    assert (low, high) == (1, 100)
    baseline = plots[0]
    # Quartiles of 1..5,100 (inclusive method): 2.25, 3.5, 4.75; 100 is an outlier, so the
    # upper whisker ends at 5.
    scale = 200 / 99
    assert baseline.q1 == round(4 + 1.25 * scale, 1)
    assert baseline.median == round(4 + 2.5 * scale, 1)
    assert baseline.whisker_high == round(4 + 4 * scale, 1)
    assert baseline.whisker_low == 4.0
    assert (plots[1].name, plots[1].count) == ("canary", 3)
    assert box_plots({"baseline": []}) is None


def test_a_chaos_timeline_puts_windows_and_kills_on_one_axis() -> None:
    report = {"before": {"window": {"start": 0, "end": 5}},
              "transition": {"window": {"start": 5, "end": 6}},
              "after": {"window": {"start": 6, "end": 10}},
              "kills": [{"pod": "gateway-abc-x1y2z", "at_seconds": 5.0}]}
    timeline = chaos_timeline(report, width=208, pad=4)
    assert timeline is not None
    assert [(s["kind"], s["x"], s["width"]) for s in timeline.spans] == [
        ("before", 4.0, 100.0), ("transition", 104.0, 20.0), ("after", 124.0, 80.0)]
    assert timeline.kills == [{"x": 104.0, "label": "x1y2z"}]
    assert chaos_timeline({"kills": []}) is None
