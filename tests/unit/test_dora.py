"""DORA's five metrics over plain deployment records, checked against hand-computed values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipyard.domain.dora import Deployment, dora_report, frequency_band

NOW = datetime(2025, 3, 31, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def deployed(days_ago: float, app: str = "shop", **fields: Any) -> Deployment:
    """A deploy of ``app`` to prod ``days_ago`` days before NOW; ``fields`` override."""
    values: dict[str, Any] = {"app": app, "environment": "prod", "version": "1.0",
                              "at": NOW - days_ago * DAY, **fields}
    return Deployment(**values)


def shipped_after(lead_time: timedelta, days_ago: float = 1, **fields: Any) -> Deployment:
    """A deploy whose commit was made ``lead_time`` before it reached prod."""
    at = NOW - days_ago * DAY
    return deployed(days_ago, commit_at=at - lead_time, **fields)


def failed_then_restored(after: timedelta | None, days_ago: float = 1) -> Deployment:
    at = NOW - days_ago * DAY
    return deployed(days_ago, failed=True, restored_at=None if after is None else at + after)


def week(*deployments: Deployment, app: str | None = None):
    """The 7-day window report, overall or for ``app``."""
    report = dora_report(deployments, now=NOW, environment="prod", windows=(7,))
    return report.overall[7] if app is None else report.by_app[app][7]


# Deployment frequency and its window


def test_a_deployment_exactly_at_the_window_start_belongs_to_the_previous_window():
    window = week(deployed(7))
    assert (window.current.deployments, window.previous.deployments) == (0, 1)


def test_a_deployment_exactly_at_now_is_in_the_current_window():
    assert week(deployed(0)).current.deployments == 1


def test_deployments_after_now_and_before_the_previous_window_are_in_no_window():
    window = week(deployed(-0.5), deployed(14), deployed(13.99))
    assert (window.current.deployments, window.previous.deployments) == (0, 1)


def test_windows_span_their_length_in_days_ending_at_now():
    window = week()
    assert (window.current.start, window.current.end) == (NOW - 7 * DAY, NOW)
    assert (window.previous.start, window.previous.end) == (NOW - 14 * DAY, NOW - 7 * DAY)


def test_deploys_and_promotes_count_as_deployments_and_rollbacks_do_not():
    current = week(deployed(1), deployed(2, kind="promote"), deployed(3, kind="rollback"),
                   deployed(4)).current
    assert (current.deployments, current.rollbacks) == (3, 1)


def test_deployments_per_day_divides_by_the_window_length():
    report = dora_report([deployed(d) for d in (1, 2, 3)], now=NOW, environment="prod",
                         windows=(7, 30))
    assert report.overall[7].current.deployments_per_day == 3 / 7
    assert report.overall[30].current.deployments_per_day == 3 / 30


def test_a_failed_deployment_still_counts_as_a_deployment():
    assert week(failed_then_restored(HOUR)).current.deployments == 1


@pytest.mark.parametrize(
    ("deployments", "days", "band"),
    [
        (8, 7, "elite"),  # more than once a day
        (7, 7, "high"),  # exactly once a day is not "multiple per day"
        (1, 7, "high"),  # exactly once a week
        (5, 30, "high"),  # 35 >= 30: more than once a week
        (4, 30, "medium"),  # 28 < 30: less than once a week
        (1, 30, "medium"),  # exactly once a month
        (0, 30, "low"),
        (91, 90, "elite"),
        (90, 90, "high"),
        (13, 90, "high"),  # 91 >= 90
        (12, 90, "medium"),  # 84 < 90
        (3, 90, "medium"),  # exactly once every 30 days
        (2, 90, "low"),
    ],
)
def test_frequency_bands_at_their_boundaries(deployments, days, band):
    assert frequency_band(deployments, days) == band


def test_the_report_gives_each_window_its_band():
    report = dora_report([deployed(d) for d in (1, 40, 70)], now=NOW, environment="prod",
                         windows=(7, 30, 90))
    assert [report.overall[days].current.frequency_band for days in (7, 30, 90)] == [
        "high", "medium", "medium"]


# Lead time for changes


def test_lead_time_median_of_an_odd_count_is_the_middle_value():
    current = week(shipped_after(1 * HOUR), shipped_after(3 * HOUR),
                   shipped_after(2 * HOUR)).current
    assert current.lead_time_median == 2 * HOUR
    # Position 0.9 x (3 - 1) = 1.8 in the sorted values: 2h + 0.8 x (3h - 2h).
    assert current.lead_time_p90 == 2.8 * HOUR


def test_lead_time_median_of_an_even_count_is_the_mean_of_the_middle_two():
    current = week(shipped_after(10 * HOUR), shipped_after(1 * HOUR),
                   shipped_after(4 * HOUR), shipped_after(2 * HOUR)).current
    assert current.lead_time_median == 3 * HOUR
    # Position 0.9 x (4 - 1) = 2.7: 4h + 0.7 x (10h - 4h).
    assert current.lead_time_p90 == 8.2 * HOUR


def test_lead_time_of_a_single_deployment_is_its_own_median_and_p90():
    current = week(shipped_after(5 * HOUR)).current
    assert (current.lead_time_median, current.lead_time_p90) == (5 * HOUR, 5 * HOUR)


def test_lead_time_leaves_out_unknown_commit_times_and_rollbacks():
    current = week(shipped_after(2 * HOUR), deployed(1),
                   shipped_after(100 * HOUR, kind="rollback")).current
    assert current.lead_time_median == 2 * HOUR


def test_a_commit_dated_after_its_deployment_has_zero_lead_time():
    assert week(shipped_after(-HOUR)).current.lead_time_median == timedelta(0)


# Change fail rate and recovery time


def test_change_fail_rate_is_failed_deployments_over_deployments():
    current = week(deployed(1), deployed(2), deployed(3), failed_then_restored(None),
                   deployed(2, kind="rollback", unplanned=True)).current
    assert (current.failed_deployments, current.change_fail_rate) == (1, 0.25)


def test_recovery_time_is_the_median_over_restored_failures():
    current = week(failed_then_restored(30 * timedelta(minutes=1), days_ago=2),
                   failed_then_restored(90 * timedelta(minutes=1), days_ago=3),
                   failed_then_restored(None, days_ago=4)).current
    assert current.recovery_time_median == HOUR


def test_a_restoration_after_now_has_not_happened_yet():
    current = week(failed_then_restored(2 * HOUR, days_ago=1 / 24)).current
    assert current.failed_deployments == 1
    assert current.recovery_time_median is None


# Rework rate


def test_rework_rate_counts_unplanned_changes_rollbacks_included():
    current = week(deployed(1), deployed(2), deployed(3, unplanned=True),
                   deployed(4, kind="rollback", unplanned=True)).current
    assert (current.unplanned, current.rework_rate) == (2, 0.5)


def test_planned_deployments_only_give_zero_rework():
    assert week(deployed(1), deployed(2)).current.rework_rate == 0.0


# Scope: apps and environments


def test_each_app_is_measured_alone_and_overall_pools_them():
    report = dora_report([deployed(1, "shop"), deployed(2, "shop"),
                          deployed(3, "cart", failed=True)], now=NOW, environment="prod",
                         windows=(7,))
    assert list(report.by_app) == ["cart", "shop"]
    assert report.by_app["shop"][7].current.change_fail_rate == 0.0
    assert report.by_app["cart"][7].current.change_fail_rate == 1.0
    assert report.overall[7].current.deployments == 3
    assert report.overall[7].current.change_fail_rate == pytest.approx(1 / 3)


def test_other_environments_are_ignored():
    report = dora_report([deployed(1), deployed(2, environment="staging"),
                          deployed(3, "cart", environment="staging")], now=NOW,
                         environment="prod", windows=(7,))
    assert list(report.by_app) == ["shop"]
    assert report.overall[7].current.deployments == 1


def test_the_environment_measured_is_a_parameter():
    report = dora_report([deployed(1), deployed(2, environment="staging")], now=NOW,
                         windows=(7,), environment="staging")
    assert report.overall[7].current.deployments == 1
    assert report.environment == "staging"


def test_an_app_with_only_old_deployments_is_reported_with_none_in_the_window():
    report = dora_report([deployed(200)], now=NOW, environment="prod", windows=(7,))
    window = report.by_app["shop"][7]
    assert (window.current.deployments, window.current.frequency_band) == (0, "low")


# Trends


def test_more_deployments_than_the_previous_window_is_better():
    assert week(deployed(1), deployed(2), deployed(8)).trend.deployment_frequency == "better"


def test_fewer_deployments_than_the_previous_window_is_worse():
    assert week(deployed(1), deployed(8), deployed(9)).trend.deployment_frequency == "worse"


def test_as_many_deployments_as_the_previous_window_is_the_same():
    assert week(deployed(1), deployed(8)).trend.deployment_frequency == "same"


def test_a_shorter_lead_time_is_better_and_a_longer_one_worse():
    shorter = week(shipped_after(HOUR, days_ago=1), shipped_after(2 * HOUR, days_ago=8))
    longer = week(shipped_after(2 * HOUR, days_ago=1), shipped_after(HOUR, days_ago=8))
    assert (shorter.trend.lead_time, longer.trend.lead_time) == ("better", "worse")


def test_a_higher_change_fail_rate_is_worse():
    trend = week(failed_then_restored(HOUR, days_ago=1), deployed(2), deployed(8)).trend
    assert trend.change_fail_rate == "worse"


def test_a_faster_recovery_is_better():
    trend = week(failed_then_restored(HOUR, days_ago=1),
                 failed_then_restored(3 * HOUR, days_ago=8)).trend
    assert trend.recovery_time == "better"


def test_a_lower_rework_rate_is_better_and_an_equal_one_the_same():
    lower = week(deployed(1), deployed(8, unplanned=True))
    equal = week(deployed(1, unplanned=True), deployed(2),
                 deployed(8, unplanned=True), deployed(9))
    assert (lower.trend.rework_rate, equal.trend.rework_rate) == ("better", "same")


def test_a_trend_is_none_when_either_window_has_no_value():
    trend = week(shipped_after(HOUR, days_ago=1)).trend
    assert trend.deployment_frequency == "better"
    assert (trend.lead_time, trend.change_fail_rate, trend.recovery_time,
            trend.rework_rate) == (None, None, None, None)


# No data


def test_no_deployments_gives_zero_frequency_and_no_other_metric():
    report = dora_report([], now=NOW, environment="prod")
    assert list(report.overall) == [7, 30, 90]
    assert report.by_app == {}
    for window in report.overall.values():
        current = window.current
        assert (current.deployments, current.deployments_per_day,
                current.frequency_band) == (0, 0.0, "low")
        assert (current.lead_time_median, current.lead_time_p90, current.change_fail_rate,
                current.recovery_time_median, current.rework_rate) == (
            None, None, None, None, None)
        assert window.trend.deployment_frequency == "same"


def test_a_window_with_only_rollbacks_has_rework_but_no_fail_rate():
    current = week(deployed(1, kind="rollback", unplanned=True)).current
    assert (current.deployments, current.change_fail_rate, current.rework_rate) == (
        0, None, 1.0)


# JSON for the REST API


def test_to_json_gives_plain_json_with_durations_in_seconds():
    report = dora_report([shipped_after(HOUR), failed_then_restored(30 * timedelta(minutes=1))],
                         now=NOW, environment="prod", windows=(7,))
    data = report.to_json()
    assert json.loads(json.dumps(data)) == data
    current = data["by_app"]["shop"]["7"]["current"]
    assert current["lead_time_median_seconds"] == 3600.0
    assert current["recovery_time_median_seconds"] == 1800.0
    assert current["change_fail_rate"] == 0.5
    assert current["end"] == "2025-03-31T12:00:00+00:00"
    assert data["overall"]["7"]["trend"]["deployment_frequency"] == "better"


# Contract checks


@pytest.mark.parametrize(
    "fields",
    [
        {"at": datetime(2025, 3, 30, 12)},  # naive
        {"commit_at": datetime(2025, 3, 30, 11)},  # naive
        {"kind": "hotfix"},
        {"restored_at": NOW},  # restored but never failed
        {"failed": True, "restored_at": NOW - 2 * DAY},  # restored before it went live
    ],
)
def test_an_invalid_deployment_is_refused(fields):
    with pytest.raises(ValueError):
        deployed(1, **fields)


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="now"):
        dora_report([], now=datetime(2025, 3, 31, 12), environment="prod")


@pytest.mark.parametrize("windows", [(0,), (-7,), (7.5,)])
def test_a_window_that_is_not_a_positive_number_of_days_is_refused(windows):
    with pytest.raises(ValueError, match="windows"):
        dora_report([], now=NOW, environment="prod", windows=windows)
