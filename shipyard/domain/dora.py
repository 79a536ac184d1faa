"""DORA's five software-delivery metrics, per app and overall, from recorded deployments.

The metrics (dora.dev, five since the 2024 report):

1. Deployment frequency: deploys and promotes that reached the environment in the window,
   in all and per day, with the 2024 report's band (:func:`frequency_band`). A rollback is
   not a deployment here: counting it would reward breaking production.
2. Lead time for changes: median and 90th percentile of ``at - commit_at`` over the
   deployments whose commit time is known.
3. Change fail rate: failed deployments over deployments.
4. Failed-deployment recovery time (MTTR until 2023): median of ``restored_at - at`` over
   the failed deployments that were restored by ``now``.
5. Rework rate: unplanned changes over all changes shipped, rollbacks included on both
   sides. A rollback is a forward deploy of an old revision made because of an incident,
   which is exactly what DORA counts as rework; leaving it out would hide the remediation
   of every failure that was rolled back rather than fixed forward.

A deployment belongs to the window its ``at`` falls in. A window of N days ending at
``end`` holds the times ``end - N days < at <= end``: open at its start, closed at its
end, so consecutive windows share no instant and every deployment lands in exactly one of
them. The current window ends at ``now``; the previous one, which the trend compares it
with, ends at ``now - N days``. Deployments after ``now`` are in no window, and a
restoration after ``now`` has not happened yet: ``now`` is when the report is made, so a
report replayed for a past date sees what was known then.

Each metric with nothing to measure is None, never zero: no deployments gives no fail
rate, no known commit time gives no lead time. Deployment frequency is always defined;
no deployments is a frequency of zero, in the low band.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, Literal, get_args

__all__ = [
    "DEFAULT_WINDOWS",
    "Band",
    "Deployment",
    "DeploymentKind",
    "Direction",
    "DoraReport",
    "Trend",
    "WindowMetrics",
    "WindowReport",
    "dora_report",
    "frequency_band",
]

DeploymentKind = Literal["deploy", "promote", "rollback"]
Band = Literal["elite", "high", "medium", "low"]
Direction = Literal["better", "worse", "same"]

DEFAULT_WINDOWS = (7, 30, 90)
"""Window lengths in days: a week, a month and a quarter."""

_DAY = timedelta(days=1)
_WEEK_DAYS = 7
_MONTH_DAYS = 30


@dataclass(frozen=True, slots=True)
class Deployment:
    """One version of ``app`` reaching ``environment`` at ``at`` (an aware datetime).

    ``kind`` is how it got there: a ``deploy``, a ``promote`` from an earlier environment,
    or a ``rollback`` to a recorded revision. ``commit_at`` is the time of the commit it
    ships, None when unknown. ``failed`` marks a deploy or promote that caused a failure in
    the environment after it went live (it was rolled back, automatically or by hand, or
    its gate failed); ``restored_at`` is when service was restored after that failure (the
    rollback's time), None while it is not, and only a failed deployment has one.
    ``unplanned`` marks a change made to fix a failure: the fix deployed after a failed
    deployment, or a rollback. ``failed`` and ``restored_at`` are ignored on rollbacks.

    Raises ValueError for a naive datetime, an unknown kind, or a restoration that is not
    of a failed deployment or comes before it.
    """

    app: str
    environment: str
    version: str
    at: datetime
    kind: DeploymentKind = "deploy"
    commit_at: datetime | None = None
    failed: bool = False
    restored_at: datetime | None = None
    unplanned: bool = False

    def __post_init__(self) -> None:
        if self.kind not in get_args(DeploymentKind):
            raise ValueError(f"{self.app} {self.version}: kind: {self.kind!r} is not one of "
                             f"{', '.join(get_args(DeploymentKind))}")
        for name in ("at", "commit_at", "restored_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{self.app} {self.version}: {name}: needs an aware "
                                 "datetime (pass tzinfo=UTC)")
        if self.restored_at is not None:
            if not self.failed:
                raise ValueError(f"{self.app} {self.version}: restored_at: only a failed "
                                 "deployment is restored")
            if self.restored_at < self.at:
                raise ValueError(f"{self.app} {self.version}: restored_at: is before the "
                                 "deployment it restores from")

    @property
    def is_deployment(self) -> bool:
        """A deploy or a promote: what deployment frequency counts."""
        return self.kind != "rollback"


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    """The five metrics over the deployments with ``start < at <= end``.

    ``deployments`` counts deploys and promotes, ``rollbacks`` the rollbacks; ``unplanned``
    counts both kinds, as the rework rate does.
    """

    start: datetime
    end: datetime
    deployments: int
    rollbacks: int
    deployments_per_day: float
    frequency_band: Band
    lead_time_median: timedelta | None
    lead_time_p90: timedelta | None
    failed_deployments: int
    change_fail_rate: float | None
    recovery_time_median: timedelta | None
    unplanned: int
    rework_rate: float | None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values: times as ISO 8601, durations in seconds."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "deployments": self.deployments,
            "rollbacks": self.rollbacks,
            "deployments_per_day": self.deployments_per_day,
            "frequency_band": self.frequency_band,
            "lead_time_median_seconds": _seconds(self.lead_time_median),
            "lead_time_p90_seconds": _seconds(self.lead_time_p90),
            "failed_deployments": self.failed_deployments,
            "change_fail_rate": self.change_fail_rate,
            "recovery_time_median_seconds": _seconds(self.recovery_time_median),
            "unplanned": self.unplanned,
            "rework_rate": self.rework_rate,
        }


@dataclass(frozen=True, slots=True)
class Trend:
    """How each metric moved from the previous window to the current one.

    More deployments is better; a shorter lead time or recovery and a lower fail or rework
    rate are better. None when either window has no value for the metric.
    """

    deployment_frequency: Direction
    lead_time: Direction | None
    change_fail_rate: Direction | None
    recovery_time: Direction | None
    rework_rate: Direction | None

    def to_json(self) -> dict[str, Any]:
        return {
            "deployment_frequency": self.deployment_frequency,
            "lead_time": self.lead_time,
            "change_fail_rate": self.change_fail_rate,
            "recovery_time": self.recovery_time,
            "rework_rate": self.rework_rate,
        }


@dataclass(frozen=True, slots=True)
class WindowReport:
    """One window length: the window ending now, the one before it, and the trend."""

    days: int
    current: WindowMetrics
    previous: WindowMetrics
    trend: Trend

    def to_json(self) -> dict[str, Any]:
        return {"days": self.days, "current": self.current.to_json(),
                "previous": self.previous.to_json(), "trend": self.trend.to_json()}


@dataclass(frozen=True, slots=True)
class DoraReport:
    """The metrics for ``environment`` at ``now``, by window length in days.

    ``overall`` pools every app's deployments; ``by_app`` has one entry per app with at
    least one record in the environment, whether or not it falls in a window.
    """

    now: datetime
    environment: str
    overall: Mapping[int, WindowReport]
    by_app: Mapping[str, Mapping[int, WindowReport]]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values for the REST API; window lengths become string keys."""
        return {
            "now": self.now.isoformat(),
            "environment": self.environment,
            "overall": _windows_json(self.overall),
            "by_app": {app: _windows_json(windows) for app, windows in self.by_app.items()},
        }


def dora_report(deployments: Iterable[Deployment], *, now: datetime, environment: str,
                windows: Sequence[int] = DEFAULT_WINDOWS) -> DoraReport:
    """The five metrics over each window length in ``windows`` (days), for the records of
    ``environment`` only, overall and per app, each with the window before it and the trend.

    Raises ValueError when ``now`` is naive or a window length is not a positive integer.
    """
    if now.utcoffset() is None:
        raise ValueError("now: needs an aware datetime (pass tzinfo=UTC)")
    for days in windows:
        if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
            raise ValueError(f"windows: {days!r} is not a positive number of days")
    records = [d for d in deployments if d.environment == environment]
    apps = sorted({d.app for d in records})
    return DoraReport(
        now=now,
        environment=environment,
        overall=_report_windows(records, now, windows),
        by_app={app: _report_windows([d for d in records if d.app == app], now, windows)
                for app in apps},
    )


def frequency_band(deployments: int, days: int) -> Band:
    """The 2024 DORA report's band for ``deployments`` over ``days`` days.

    Elite is "on demand (multiple deploys per day)", so it needs more than one a day; once
    a day is the top of high. The other bands are worded as ranges sharing their ends
    (high "between once per day and once per week", medium "between once per week and
    once per month", low "between once per month and once every six months"); a shared
    end goes to the better band. A month is 30 days, and none at all is low:

    - elite: more than 1 per day;
    - high: from 1 per week up to 1 per day, both included;
    - medium: from 1 per 30 days up to 1 per week, 1 per week excluded;
    - low: fewer than 1 per 30 days, none included.

    The comparison is exact (7 deploys in 7 days is high, 3 in 90 is medium).
    """
    rate = Fraction(deployments, days)
    if rate > 1:
        return "elite"
    if rate >= Fraction(1, _WEEK_DAYS):
        return "high"
    if rate >= Fraction(1, _MONTH_DAYS):
        return "medium"
    return "low"


def _report_windows(records: Sequence[Deployment], now: datetime,
                    windows: Sequence[int]) -> dict[int, WindowReport]:
    reports: dict[int, WindowReport] = {}
    for days in windows:
        current = _measure(records, end=now, days=days, now=now)
        previous = _measure(records, end=now - days * _DAY, days=days, now=now)
        reports[days] = WindowReport(days, current, previous, _trend(previous, current))
    return reports


def _measure(records: Sequence[Deployment], *, end: datetime, days: int,
             now: datetime) -> WindowMetrics:
    start = end - days * _DAY
    in_window = [d for d in records if start < d.at <= end]
    shipped = [d for d in in_window if d.is_deployment]
    failed = [d for d in shipped if d.failed]
    # A committer's clock running ahead can put a commit after its deployment; the lead
    # time is then as short as it can be, not negative.
    lead_times = [max((d.at - d.commit_at).total_seconds(), 0.0)
                  for d in shipped if d.commit_at is not None]
    recoveries = [(d.restored_at - d.at).total_seconds() for d in failed
                  if d.restored_at is not None and d.restored_at <= now]
    unplanned = sum(d.unplanned for d in in_window)
    return WindowMetrics(
        start=start,
        end=end,
        deployments=len(shipped),
        rollbacks=len(in_window) - len(shipped),
        deployments_per_day=len(shipped) / days,
        frequency_band=frequency_band(len(shipped), days),
        lead_time_median=_duration(statistics.median(lead_times)) if lead_times else None,
        lead_time_p90=_duration(_p90(lead_times)) if lead_times else None,
        failed_deployments=len(failed),
        change_fail_rate=len(failed) / len(shipped) if shipped else None,
        recovery_time_median=_duration(statistics.median(recoveries)) if recoveries else None,
        unplanned=unplanned,
        rework_rate=unplanned / len(in_window) if in_window else None,
    )


def _p90(values: Sequence[float]) -> float:
    """The 90th percentile, interpolated between the two nearest values (numpy's default);
    the default "exclusive" method would extrapolate past the largest of a few values."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def _trend(previous: WindowMetrics, current: WindowMetrics) -> Trend:
    return Trend(
        deployment_frequency=_compare(previous.deployments, current.deployments,
                                      higher_is_better=True),
        lead_time=_lower_is_better(_seconds(previous.lead_time_median),
                                   _seconds(current.lead_time_median)),
        change_fail_rate=_lower_is_better(previous.change_fail_rate, current.change_fail_rate),
        recovery_time=_lower_is_better(_seconds(previous.recovery_time_median),
                                       _seconds(current.recovery_time_median)),
        rework_rate=_lower_is_better(previous.rework_rate, current.rework_rate),
    )


def _lower_is_better(previous: float | None, current: float | None) -> Direction | None:
    if previous is None or current is None:
        return None
    return _compare(previous, current, higher_is_better=False)


def _compare(previous: float, current: float, *, higher_is_better: bool) -> Direction:
    if current == previous:
        return "same"
    return "better" if (current > previous) == higher_is_better else "worse"


def _duration(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds()


def _windows_json(windows: Mapping[int, WindowReport]) -> dict[str, Any]:
    return {str(days): report.to_json() for days, report in windows.items()}
