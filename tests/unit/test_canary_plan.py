"""Planning a canary's analysis window, its power to see a shift, and backtesting a config
on metric sets of known outcome."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest

from shipyard.domain.canary_judge import CanaryConfig, MetricConfig, classify_metric
from shipyard.domain.canary_plan import (
    BacktestCase,
    backtest,
    can_detect_shift,
    detection_power,
    plan_window,
    points_for_shift,
    points_in_window,
    step_for_requests,
    window_for_points,
)


def test_fifty_points_ten_seconds_apart_after_a_minute_of_warm_up_take_560_seconds():
    assert window_for_points(50, 10) == 500.0
    assert window_for_points(50, 10, warmup_seconds=60) == 560.0


@pytest.mark.parametrize(("points", "interval", "warmup"),
                         [(50, 10, 0), (50, 10, 60), (6000, 0.1, 0), (1, 60, 3600), (7, 1.5, 2)])
def test_points_in_window_undoes_window_for_points(points: int, interval: float,
                                                   warmup: float):
    window = window_for_points(points, interval, warmup_seconds=warmup)
    assert points_in_window(window, interval, warmup_seconds=warmup) == points


def test_only_full_intervals_after_the_warm_up_count():
    assert points_in_window(599, 10) == 59
    assert points_in_window(600, 10, warmup_seconds=600) == 0
    assert points_in_window(300, 10, warmup_seconds=900) == 0


@pytest.mark.parametrize("call", [
    lambda: window_for_points(0, 10),
    lambda: window_for_points(50, 0),
    lambda: window_for_points(50, 10, warmup_seconds=-1),
    lambda: points_in_window(-1, 10),
    lambda: step_for_requests(10, 0, 100),
])
def test_nonsense_is_refused(call):
    with pytest.raises(ValueError):
        call()


def test_a_point_is_widened_until_it_holds_enough_requests():
    # 2 requests/s x 10 s = 20 per scrape; 100 need 5 scrapes: 50 s.
    assert step_for_requests(10, 2, 100) == 50.0
    # 20 requests/s: 200 per scrape already.
    assert step_for_requests(10, 20, 100) == 10.0
    # 3 requests/s: 30 per scrape; 100 need 4 (120), not 3 (90).
    assert step_for_requests(10, 3, 100) == 40.0


def test_a_plan_with_a_request_rate_lengthens_the_window():
    plain = plan_window(10, 50, warmup_seconds=60)
    busy = plan_window(10, 50, warmup_seconds=60, request_rate=2)
    assert (plain.step_seconds, plain.window_seconds, plain.requests_per_point) == (
        10.0, 560.0, None)
    assert (busy.step_seconds, busy.window_seconds, busy.requests_per_point) == (
        50.0, 2560.0, 100.0)
    assert plain.meets_recommendation
    assert not plan_window(10, 49).meets_recommendation


def test_detection_power_follows_noethers_approximation():
    # 10% shift, cv 0.2, dead zone 25%: 0.375 sd. P(canary > baseline) = Phi(0.375/sqrt 2)
    # = 0.6046; z = 0.1046 * sqrt(12 * 2500 / 101) = 1.802; power = Phi(1.802 - 2.326)
    # = Phi(-0.524) = 0.300.
    assert detection_power(50, 50, 0.1, 0.2) == pytest.approx(0.300, abs=0.001)
    assert detection_power(50, 50, -0.1, 0.2) == detection_power(50, 50, 0.1, 0.2)
    assert detection_power(500, 500, 0.1, 0.2) > detection_power(50, 50, 0.1, 0.2)
    assert detection_power(50, 50, 0.3, 0.2) > detection_power(50, 50, 0.1, 0.2)


def test_the_points_for_a_shift_are_the_fewest_that_detect_it():
    needed = points_for_shift(0.1, 0.2)
    assert needed == 154
    assert can_detect_shift(needed, needed, 0.1, 0.2)
    assert not can_detect_shift(needed - 1, needed - 1, 0.1, 0.2)
    with pytest.raises(ValueError, match="needs more than"):
        points_for_shift(0.0, 0.2)


def test_the_power_estimate_is_close_to_how_often_the_judge_flags_a_shift():
    # Simulated canaries 10% higher with cv 0.2: the judge should flag about 80% at the
    # planned 154 points, and far fewer at 50 (the estimate says 30%).
    rng = np.random.default_rng(5)
    judge = MetricConfig("latency", direction="increase")

    def flagged(points: int, trials: int = 150) -> float:
        return sum(classify_metric(judge, rng.normal(100, 20, points),
                                   rng.normal(110, 20, points)).classification == "High"
                   for _ in range(trials)) / trials

    assert 0.7 <= flagged(154) <= 0.97
    assert flagged(50) <= 0.45


def _case(name: str, expected: Literal["pass", "fail"], errors: list[float],
          factor: float) -> BacktestCase:
    return BacktestCase(name, expected, {"errors": errors},
                        {"errors": [e * factor for e in errors]})


ERRORS = [2.0, 3.0, 2.0, 4.0, 3.0, 2.0, 3.0, 3.0, 2.0, 4.0] * 3
CASES = [_case("fine", "pass", ERRORS, 1.0), _case("broken", "fail", ERRORS, 3.0),
         _case("flagged-good", "pass", ERRORS, 2.0)]


def test_a_backtest_counts_false_passes_and_false_fails():
    config = CanaryConfig((MetricConfig("errors", direction="increase", critical=True),))
    report = backtest(config, CASES)
    assert report.verdicts == {"fine": "pass", "broken": "fail", "flagged-good": "fail"}
    assert report.false_fails == ("flagged-good",) and report.false_passes == ()
    assert report.false_fail_rate == pytest.approx(0.5) and report.false_pass_rate == 0.0
    assert report.to_json()["verdicts"]["broken"] == {"verdict": "fail", "score": 0.0}


def test_a_config_blind_to_increases_lets_the_bad_canary_through():
    config = CanaryConfig((MetricConfig("errors", direction="decrease"),))
    report = backtest(config, CASES)
    assert report.false_passes == ("broken",)
    assert report.false_pass_rate == 1.0 and report.false_fail_rate == 0.0


def test_backtest_case_names_must_be_unique():
    config = CanaryConfig((MetricConfig("errors"),))
    with pytest.raises(ValueError, match="'fine' appears twice"):
        backtest(config, [CASES[0], CASES[0]])
