"""Planning a canary analysis before it runs, and backtesting a config on stored metric sets.

Kayenta leaves both to the user. Its best practices ask for at least 50 data points per
metric, which fixes how long the analysis window must be for a given scrape interval; and a
config is only as good as its false-pass and false-fail rates on canaries whose outcome is
known, which replaying stored metric sets through the judge measures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

from shipyard.domain.canary_judge import (
    CONFIDENCE,
    TOLERANCE,
    CanaryConfig,
    Judgement,
    Verdict,
    judge_canary,
)

__all__ = [
    "RECOMMENDED_POINTS", "BacktestCase", "BacktestReport", "CanaryWindow", "backtest",
    "can_detect_shift", "detection_power", "plan_window", "points_for_shift",
    "points_in_window", "step_for_requests", "window_for_points",
]

RECOMMENDED_POINTS = 50
"""Kayenta's best practices: at least 50 data points per metric."""
DEFAULT_POWER = 0.8


@dataclass(frozen=True, slots=True)
class CanaryWindow:
    """An analysis window: ``warmup_seconds`` ignored, then ``points`` data points one
    ``step_seconds`` apart; ``requests_per_point`` when a request rate was given."""

    step_seconds: float
    points: int
    warmup_seconds: float
    window_seconds: float
    requests_per_point: float | None = None

    @property
    def meets_recommendation(self) -> bool:
        """At least Kayenta's recommended 50 points per metric."""
        return self.points >= RECOMMENDED_POINTS


def window_for_points(points: int, interval_seconds: float, *,
                      warmup_seconds: float = 0.0) -> float:
    """Seconds of analysis needed for ``points`` data points, one per ``interval_seconds``
    after a warm-up: ``warmup + points x interval``.

    One point per full interval: a range query whose ends are both included may return one
    more, never fewer.
    """
    _check_positive(interval_seconds, "interval_seconds")
    _check_warmup(warmup_seconds)
    if points < 1:
        raise ValueError(f"points: {points} must be at least 1")
    return float(warmup_seconds + points * interval_seconds)


def points_in_window(window_seconds: float, interval_seconds: float, *,
                     warmup_seconds: float = 0.0) -> int:
    """Data points a window yields at one per ``interval_seconds`` after the warm-up (full
    intervals only); the inverse of :func:`window_for_points`."""
    _check_positive(interval_seconds, "interval_seconds")
    _check_warmup(warmup_seconds)
    if window_seconds < 0:
        raise ValueError(f"window_seconds: {window_seconds:g} must be 0 or more")
    usable = max(window_seconds - warmup_seconds, 0.0)
    # A hair of slack so 600 s / 0.1 s is 6000 points despite binary fractions.
    return math.floor(usable / interval_seconds + 1e-9)


def step_for_requests(interval_seconds: float, request_rate: float,
                      min_requests_per_point: float) -> float:
    """The shortest step, a whole number of scrape intervals, over which a point sees at
    least ``min_requests_per_point`` requests at ``request_rate`` per second.

    A point is a rate or a ratio over its step: an error rate over five requests moves in
    steps of 20%, and is mostly noise.
    """
    _check_positive(interval_seconds, "interval_seconds")
    _check_positive(request_rate, "request_rate")
    if min_requests_per_point < 0:
        raise ValueError(f"min_requests_per_point: {min_requests_per_point:g} must be 0 "
                         "or more")
    intervals = max(1, math.ceil(min_requests_per_point / (request_rate * interval_seconds)
                                 - 1e-9))
    return float(intervals * interval_seconds)


def plan_window(interval_seconds: float, points: int = RECOMMENDED_POINTS, *,
                warmup_seconds: float = 0.0, request_rate: float | None = None,
                min_requests_per_point: float = 100.0) -> CanaryWindow:
    """How long to analyse for ``points`` data points per metric. Without a request rate a
    point is one scrape interval; with one (requests per second reaching one side, baseline
    or canary), a point is widened to whole intervals until it holds
    ``min_requests_per_point`` requests (:func:`step_for_requests`)."""
    step = (float(interval_seconds) if request_rate is None
            else step_for_requests(interval_seconds, request_rate, min_requests_per_point))
    window = window_for_points(points, step, warmup_seconds=warmup_seconds)
    return CanaryWindow(step, points, float(warmup_seconds), window,
                        None if request_rate is None else request_rate * step)


def detection_power(points_baseline: int, points_canary: int, relative_shift: float,
                    coefficient_of_variation: float, *, confidence: float = CONFIDENCE,
                    tolerance: float = TOLERANCE) -> float:
    """The chance that the judge flags a canary whose metric is shifted by
    ``relative_shift`` (0.1: 10% higher) with ``points_baseline`` and ``points_canary``
    points, each series' spread being ``coefficient_of_variation`` (sd / mean).

    Assumptions, for a planning figure rather than a guarantee: normally distributed points
    of equal spread on both sides, independent of each other; the canary differs by a
    location shift only; Noether's normal approximation to the Mann-Whitney test; and the
    judge's dead zone (``tolerance`` x the estimate) taken as shrinking the shift the test
    must detect to ``(1 - tolerance) x shift``. Autocorrelated points (a slow drift) carry
    less information than this counts.
    """
    if points_baseline < 1 or points_canary < 1:
        raise ValueError("points: each side needs at least one point")
    _check_positive(coefficient_of_variation, "coefficient_of_variation")
    if not 0 < confidence < 1 or not 0 <= tolerance < 1:
        raise ValueError("confidence must lie in (0, 1) and tolerance in [0, 1)")
    normal = NormalDist()
    effective = abs(relative_shift) * (1 - tolerance) / coefficient_of_variation
    # P(canary point > baseline point) for two normals this many sds apart.
    superiority = normal.cdf(effective / math.sqrt(2))
    n, m = points_baseline, points_canary
    z_test = (superiority - 0.5) * math.sqrt(12 * n * m / (n + m + 1))
    return normal.cdf(z_test - normal.inv_cdf(1 - (1 - confidence) / 2))


def can_detect_shift(points_baseline: int, points_canary: int, relative_shift: float,
                     coefficient_of_variation: float, *, power: float = DEFAULT_POWER,
                     confidence: float = CONFIDENCE) -> bool:
    """Whether :func:`detection_power` reaches ``power`` (0.8 by default)."""
    return detection_power(points_baseline, points_canary, relative_shift,
                           coefficient_of_variation, confidence=confidence) >= power


def points_for_shift(relative_shift: float, coefficient_of_variation: float, *,
                     power: float = DEFAULT_POWER, confidence: float = CONFIDENCE,
                     limit: int = 1_000_000) -> int:
    """The fewest points per side (baseline and canary alike) at which
    :func:`can_detect_shift` holds, under its assumptions. Raises ValueError when even
    ``limit`` points are not enough (a shift of 0, say)."""
    if not 0 < power < 1:
        raise ValueError(f"power: {power:g} must lie in (0, 1)")

    def enough(points: int) -> bool:
        return detection_power(points, points, relative_shift, coefficient_of_variation,
                               confidence=confidence) >= power

    if not enough(limit):
        raise ValueError(f"a shift of {relative_shift:g} at a coefficient of variation of "
                         f"{coefficient_of_variation:g} needs more than {limit} points")
    low, high = 1, limit
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle + 1, high)
    return low


@dataclass(frozen=True, slots=True)
class BacktestCase:
    """A stored metric set whose right outcome is known: ``expected`` is what a good judge
    says (pass for a release that was fine, fail for one that was not)."""

    name: str
    expected: Literal["pass", "fail"]
    baseline: Mapping[str, Sequence[float | None]]
    canary: Mapping[str, Sequence[float | None]]


@dataclass(frozen=True, slots=True)
class BacktestReport:
    """The verdict on every case, and the config's error rates: a false pass lets a bad
    canary through, a false fail stops a good one (a marginal verdict counts as neither
    pass nor fail: it stops the release for a person to look)."""

    verdicts: Mapping[str, Verdict]
    judgements: Mapping[str, Judgement]
    false_passes: tuple[str, ...]
    false_fails: tuple[str, ...]
    marginals: tuple[str, ...]
    good_cases: int
    bad_cases: int

    @property
    def false_pass_rate(self) -> float | None:
        """Share of bad canaries judged pass; None without any bad case."""
        return len(self.false_passes) / self.bad_cases if self.bad_cases else None

    @property
    def false_fail_rate(self) -> float | None:
        """Share of good canaries judged fail; None without any good case."""
        return len(self.false_fails) / self.good_cases if self.good_cases else None

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": len(self.verdicts), "good_cases": self.good_cases,
            "bad_cases": self.bad_cases, "false_pass_rate": self.false_pass_rate,
            "false_fail_rate": self.false_fail_rate,
            "false_passes": list(self.false_passes), "false_fails": list(self.false_fails),
            "marginals": list(self.marginals),
            "verdicts": {name: {"verdict": verdict, "score": self.judgements[name].score}
                         for name, verdict in self.verdicts.items()},
        }


def backtest(config: CanaryConfig, cases: Iterable[BacktestCase]) -> BacktestReport:
    """Judge every case with ``config`` and count where the verdict disagrees with the
    known outcome. Case names must be unique."""
    judgements: dict[str, Judgement] = {}
    expected: dict[str, str] = {}
    for case in cases:
        if case.name in judgements:
            raise ValueError(f"backtest case {case.name!r} appears twice")
        judgements[case.name] = judge_canary(config, case.baseline, case.canary)
        expected[case.name] = case.expected
    verdicts = {name: j.verdict for name, j in judgements.items()}
    return BacktestReport(
        verdicts, judgements,
        tuple(n for n, v in verdicts.items() if v == "pass" and expected[n] == "fail"),
        tuple(n for n, v in verdicts.items() if v == "fail" and expected[n] == "pass"),
        tuple(n for n, v in verdicts.items() if v == "marginal"),
        sum(1 for e in expected.values() if e == "pass"),
        sum(1 for e in expected.values() if e == "fail"))


def _check_positive(value: float, name: str) -> None:
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name}: {value:g} must be a positive number")


def _check_warmup(warmup_seconds: float) -> None:
    if not warmup_seconds >= 0 or not math.isfinite(warmup_seconds):
        raise ValueError(f"warmup_seconds: {warmup_seconds:g} must be 0 or more")
