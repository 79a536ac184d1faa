"""Kayenta's NetflixACAJudge-v1.0: classification, statistics and scoring, on series small
enough to work out by hand (the working is in the comments)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import rankdata  # type: ignore[import-untyped]

from shipyard.domain.canary_judge import (
    CanaryConfig,
    EffectSize,
    MetricConfig,
    classify_metric,
    estimate_shift,
    judge_canary,
    round_score,
)

# Ten distinct values 0..9; shifting them by s makes the pairwise differences canary -
# baseline = s + (i - j), i.e. s-9 .. s+9 with counts 1, 2, ..., 10, ..., 2, 1 (N = 100).
TEN = list(range(10))
# Fifty points around 100 (100.0, 100.1, ..., 100.9, five times each).
STEADY = [100 + (i % 10) * 0.1 for i in range(50)]


def metric(name: str = "m", **settings) -> MetricConfig:
    return MetricConfig(name, **settings)


def test_the_shift_of_two_separated_series_spans_every_pairwise_difference():
    # d = canary - baseline = 10 + (i - j) for i, j in 0..4: 6..14, median 10.
    # sigma = sqrt(5*5/12 * (5+5+1)) = 4.787, z(0.98) = 2.326, z*sigma = 11.14;
    # lower index floor(12.5 - 11.14 - 0.5) = 0 -> d[0] = 6,
    # upper index floor(12.5 + 11.14 + 0.5) = 24 -> d[24] = 14.
    shift = estimate_shift([1, 2, 3, 4, 5], [11, 12, 13, 14, 15])
    assert (shift.estimate, shift.lower, shift.upper) == (10.0, 6.0, 14.0)
    assert shift.p_value < 0.02


def test_the_interval_comes_from_the_order_statistics_of_the_pairwise_differences():
    # d = 5 + (i - j): sorted, -4 once, -3 twice, -2 three times, -1 four, 0 five, 1 six
    # (indices 15..20). sigma = sqrt(100/12 * 21) = 13.23, z*sigma = 30.78;
    # lower index floor(50 - 30.78 - 0.5) = 18 -> 1; upper floor(50 + 30.78 + 0.5) = 81
    # -> 10 - d[18] = 9 by symmetry. The median is 5.
    shift = estimate_shift(TEN, [v + 5 for v in TEN])
    assert (shift.estimate, shift.lower, shift.upper) == (5.0, 1.0, 9.0)


def test_a_shift_whose_interval_reaches_into_the_dead_zone_passes():
    # As above: dead zone 0.25 * 5 = 1.25, and the lower bound 1 is inside it.
    result = classify_metric(metric(), TEN, [v + 5 for v in TEN])
    assert result.classification == "Pass"
    assert (result.ci_lower, result.hl_estimate) == (1.0, 5.0)


def test_a_shift_whose_interval_clears_the_dead_zone_is_high():
    # Shift 6: interval [2, 10], estimate 6, dead zone 1.5 < 2.
    result = classify_metric(metric(), TEN, [v + 6 for v in TEN])
    assert result.classification == "High"
    assert (result.ci_lower, result.ci_upper, result.hl_estimate) == (2.0, 10.0, 6.0)
    assert result.effect_size == pytest.approx(10.5 / 4.5)  # canary mean / baseline mean


def test_a_mirror_shift_is_low():
    result = classify_metric(metric(), [v + 6 for v in TEN], TEN)
    assert result.classification == "Low"
    assert (result.ci_lower, result.ci_upper, result.hl_estimate) == (-10.0, -2.0, -6.0)


def _kayenta_statistic(canary: np.ndarray, baseline: np.ndarray, mu: float,
                       quantile: float) -> float:
    # Kayenta's MannWhitney.wilcoxonDiff, transcribed: the standardised rank sum of
    # canary - mu against the baseline, continuity-corrected, tie-corrected variance.
    nx, ny = len(canary), len(baseline)
    ranks = rankdata(np.concatenate([canary - mu, baseline]))
    _, ties = np.unique(ranks, return_counts=True)
    dz = ranks[:nx].sum() - nx * (nx + 1) / 2 - nx * ny / 2
    sigma = math.sqrt(nx * ny / 12 * ((nx + ny + 1)
                                      - (ties ** 3 - ties).sum() / ((nx + ny) * (nx + ny - 1))))
    return float((dz - np.sign(dz) * 0.5) / sigma - quantile)


def _kayenta_root(canary: np.ndarray, baseline: np.ndarray, quantile: float) -> float:
    low, high = canary.min() - baseline.max(), canary.max() - baseline.min()
    if _kayenta_statistic(canary, baseline, low, quantile) <= 0:
        return low
    if _kayenta_statistic(canary, baseline, high, quantile) >= 0:
        return high
    for _ in range(100):
        middle = (low + high) / 2
        if _kayenta_statistic(canary, baseline, middle, quantile) > 0:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@pytest.mark.parametrize("tied", [False, True], ids=["continuous", "tied-integers"])
def test_the_interval_is_where_kayentas_root_finding_lands(tied: bool):
    rng = np.random.default_rng(11)
    z = 2.3263478740408408  # the 99th percentile of the standard normal
    for _ in range(40):
        n, m = rng.integers(2, 30, size=2)
        if tied:
            canary = rng.integers(0, 4, n).astype(float)
            baseline = rng.integers(0, 4, m).astype(float)
        else:
            canary, baseline = rng.normal(0.5, 1, n), rng.normal(0, 1, m)
        if np.unique(np.concatenate([canary, baseline])).size == 1:
            continue
        shift = estimate_shift(baseline, canary)
        assert shift.lower == pytest.approx(_kayenta_root(canary, baseline, z), abs=1e-9)
        assert shift.upper == pytest.approx(_kayenta_root(canary, baseline, -z), abs=1e-9)
        # The estimate is a root of Kayenta's equation for the estimate (quantile 0).
        assert _kayenta_statistic(canary, baseline, shift.estimate - 1e-9, 0) >= 0
        assert _kayenta_statistic(canary, baseline, shift.estimate + 1e-9, 0) <= 0


def test_identical_data_passes_even_in_another_order():
    result = classify_metric(metric(critical=True), [3, 1, 2], [1, 2, 3])
    assert result.classification == "Pass" and not result.critical_failure
    assert "identical" in result.reason
    assert result.p_value is None


def test_one_value_throughout_both_series_passes():
    result = classify_metric(metric(), [4, 4, 4], [4, 4])
    assert result.classification == "Pass"
    assert "same" in result.reason


def test_two_different_constants_get_noise_and_the_same_judgement_every_time():
    # 3 against 5: every difference is 2 (give or take 5e-5 of noise), so the interval
    # sits at 2, far above the dead zone of 0.5.
    first = classify_metric(metric(), [3] * 10, [5] * 10)
    again = classify_metric(metric(), [3] * 10, [5] * 10)
    assert first.classification == "High"
    assert first.hl_estimate == pytest.approx(2, abs=1e-3)
    assert first == again
    assert first.canary_values == (5.0,) * 10  # the noise is for the test only


def test_a_doubled_critical_error_metric_is_high_and_forces_the_score_to_zero():
    errors = [2, 3, 2, 4, 3, 2, 3, 3, 2, 4, 3, 2]
    config = CanaryConfig((metric("errors", direction="increase", critical=True,
                                  groups=("errors",)),
                           metric("latency", groups=("latency",))))
    judgement = judge_canary(config, {"errors": errors, "latency": STEADY},
                             {"errors": [2 * e for e in errors], "latency": STEADY})
    result = judgement.metrics["errors"]
    assert result.classification == "High" and result.critical_failure
    assert result.effect_size == pytest.approx(2.0)
    # latency passes, so the groups would give 50; the critical failure makes it 0.
    assert judgement.group_scores == {"errors": 0.0, "latency": 100.0}
    assert judgement.score == 0.0 and judgement.verdict == "fail"
    assert any("critical metric 'errors'" in reason for reason in judgement.reasons)


def test_direction_decrease_ignores_an_increase_and_catches_a_decrease():
    up = classify_metric(metric(direction="decrease"), TEN, [v + 6 for v in TEN])
    down = classify_metric(metric(direction="decrease"), [v + 6 for v in TEN], TEN)
    assert up.classification == "Pass" and "does not count" in up.reason
    assert down.classification == "Low"


def test_direction_increase_ignores_a_decrease():
    result = classify_metric(metric(direction="increase"), [v + 6 for v in TEN], TEN)
    assert result.classification == "Pass"


def test_a_significant_five_percent_increase_passes_under_allowed_increase_1_1():
    # Every canary point is 5% above its baseline twin; all 2500 differences are positive
    # (the smallest is 105.0 - 100.9 = 4.1), so the interval clears the dead zone of about
    # 1.26. The effect, 1.05, does not reach 1.1.
    canary = [v * 1.05 for v in STEADY]
    gated = classify_metric(metric(effect_size=EffectSize(allowed_increase=1.1)), STEADY,
                            canary)
    assert gated.classification == "Pass"
    assert gated.effect_size == pytest.approx(1.05)
    assert "does not reach allowedIncrease 1.1" in gated.reason
    ungated = classify_metric(metric(effect_size=EffectSize(allowed_increase=1.04)), STEADY,
                              canary)
    assert ungated.classification == "High"


def test_a_critical_metric_fails_the_canary_only_beyond_its_critical_threshold():
    effect = EffectSize(allowed_decrease=0.9, critical_decrease=0.5)
    mild = classify_metric(metric(critical=True, effect_size=effect), STEADY,
                           [v * 0.8 for v in STEADY])
    severe = classify_metric(metric(critical=True, effect_size=effect), STEADY,
                             [v * 0.4 for v in STEADY])
    assert mild.classification == "Low" and not mild.critical_failure
    assert severe.classification == "Low" and severe.critical_failure


def test_an_undefined_mean_ratio_skips_the_effect_gate():
    # No errors in the baseline: the mean ratio divides by 0 and is NaN, so even a
    # criticalIncrease of 5 does not stop the rise from failing the canary.
    effect = EffectSize(allowed_increase=2.0, critical_increase=5.0)
    result = classify_metric(metric(critical=True, effect_size=effect), [0.0] * 20,
                             [0.1] * 20)
    assert result.effect_size is not None and math.isnan(result.effect_size)
    assert result.classification == "High" and result.critical_failure


def test_cles_is_the_chance_a_canary_value_beats_a_baseline_value():
    # canary 1,2,3 vs baseline 2: beats once, ties once (half), loses once -> 1.5 / 3.
    result = classify_metric(metric(effect_size=EffectSize.for_measure("cles")), [2],
                             [1, 2, 3])
    assert result.effect_size == pytest.approx(0.5)
    high = classify_metric(metric(effect_size=EffectSize.for_measure("cles",
                                                                     allowed_increase=0.99)),
                           TEN, [v + 10 for v in TEN])
    assert high.effect_size == 1.0 and high.classification == "High"


def test_nan_remove_drops_missing_points_and_replace_reads_them_as_zero():
    baseline = [10] * 8 + [11] * 2
    canary = [10, 11] + [None] * 4 + [math.nan] * 4
    removed = classify_metric(metric(nan_strategy="remove"), baseline, canary)
    replaced = classify_metric(metric(nan_strategy="replace"), baseline, canary)
    assert removed.canary_values == (10.0, 11.0)
    assert removed.classification == "Pass"
    assert replaced.canary_values == (10.0, 11.0) + (0.0,) * 8
    # Eight zeros against tens and elevens: every pair but 4 x 10 of 100 is far below.
    assert replaced.classification == "Low"


def test_no_data_is_nodata_or_fails_the_metric_when_it_must_have_data():
    assert classify_metric(metric(), [1, 2], []).classification == "Nodata"
    required = classify_metric(metric(must_have_data=True), [1, 2], [None])
    assert required.classification == "NodataFailMetric" and not required.critical_failure
    critical = classify_metric(metric(must_have_data=True, critical=True), [], [1.0])
    assert critical.classification == "Nodata" and critical.critical_failure
    assert classify_metric(metric(nan_strategy="replace"), [1, 2], []).classification == "Pass"


def test_outlier_removal_uses_iqr_fences_widened_to_the_1st_and_99th_percentiles():
    # 96 fives with 1, 2, 8, 9: P25 = P75 = 5, so the IQR fences are [5, 5]; P1 = 1.99 and
    # P99 = 8.01 widen them, keeping 2 and 8 and dropping 1 and 9.
    values = [5] * 96 + [1, 2, 8, 9]
    removed = classify_metric(metric(outlier_strategy="remove"), values, [5] * 10)
    kept = classify_metric(metric(), values, [5] * 10)
    assert (removed.baseline.count, removed.baseline.min, removed.baseline.max) == (98, 2, 8)
    assert kept.baseline.count == 100


def test_a_far_outlier_beyond_three_iqrs_is_removed():
    # 1..100: P25 = 25.75, P75 = 75.25, upper fence 75.25 + 3 * 49.5 = 223.75 (P99 = 100).
    result = classify_metric(metric(outlier_strategy="remove"), [*range(1, 101), 10_000],
                             [50] * 10)
    assert (result.baseline.count, result.baseline.max) == (100, 100)


def test_infinite_values_are_an_error_that_fails_nothing_even_on_a_critical_metric():
    # Kayenta's judge builds the result of a failed classification without its criticality.
    result = classify_metric(metric(critical=True), [1, 2, math.inf], [1, 2, 3])
    assert result.classification == "Error" and not result.critical_failure
    assert result.reason.startswith("Metric Classification Failed")


def test_an_error_is_left_out_of_the_score_and_the_reasons_say_so():
    config = CanaryConfig((metric("errors", critical=True), metric("latency"),
                           metric("cpu")))
    judgement = judge_canary(config, {"errors": [1, math.inf], "latency": TEN, "cpu": TEN},
                             {"errors": [1, 2], "latency": TEN,
                              "cpu": [v + 6 for v in TEN]})
    # Pass / (Pass + High) = 1 / 2: the Error counts in neither, and fails nothing.
    assert judgement.score == 50.0
    assert any(r.startswith("metric 'errors' could not be classified") and "critical" in r
               for r in judgement.reasons)


def test_a_muted_metric_is_classified_and_reported_but_left_out_of_the_score():
    config = CanaryConfig((metric("latency"), metric("cpu", muted=True)))
    judgement = judge_canary(config, {"latency": TEN, "cpu": TEN},
                             {"latency": TEN, "cpu": [v + 6 for v in TEN]})
    assert judgement.metrics["cpu"].classification == "High"
    assert judgement.score == 100.0 and judgement.verdict == "pass"
    reported = judgement.to_json()["metrics"]
    assert reported["cpu"]["muted"] is True and reported["cpu"]["classification"] == "High"
    assert reported["latency"]["muted"] is False
    assert "metric 'cpu' is muted: classified High and reported, left out of the score" in (
        judgement.reasons)


def test_a_muted_critical_failure_does_not_fail_the_canary():
    config = CanaryConfig((metric("errors", critical=True, muted=True), metric("latency")))
    judgement = judge_canary(config, {"errors": TEN, "latency": TEN},
                             {"errors": [v + 6 for v in TEN], "latency": TEN})
    assert judgement.metrics["errors"].critical_failure  # as classified, and reported
    assert judgement.score == 100.0


def test_muted_metrics_do_not_count_towards_the_nodata_share():
    # Two of four metrics have no data, but both are muted: 0 of 2 scored metrics.
    config = CanaryConfig((metric("a"), metric("b"), metric("c", muted=True),
                           metric("d", muted=True)))
    data = {"a": TEN, "b": TEN}
    assert judge_canary(config, data, data).score == 100.0


def test_a_canary_whose_every_metric_is_muted_scores_zero():
    config = CanaryConfig((metric("a", muted=True),))
    judgement = judge_canary(config, {"a": TEN}, {"a": TEN})
    assert judgement.score == 0.0 and judgement.group_scores == {}
    assert "every metric is muted: nothing to score" in judgement.reasons


def test_a_group_with_no_judged_metric_reports_zero_and_counts_as_100_in_the_summary():
    # errors: Pass -> 100; latency: only Nodata -> reported 0, summarised as 100.
    config = CanaryConfig((metric("e", groups=("errors",)), metric("a", groups=("errors",)),
                           metric("l", groups=("latency",))),
                          group_weights={"errors": 50, "latency": 50})
    data = {"e": TEN, "a": TEN}
    judgement = judge_canary(config, data, data)
    assert judgement.group_scores == {"errors": 100.0, "latency": 0.0}
    assert judgement.score == 100.0
    assert any(r.startswith("group 'latency' has no metric judged") for r in judgement.reasons)


def test_the_weight_of_a_group_whose_metrics_are_all_muted_counts_for_nothing():
    # As in Kayenta: errors 60 x 100 + latency's 40 lost = 60, which fails.
    config = CanaryConfig((metric("e", groups=("errors",)),
                           metric("l", groups=("latency",), muted=True)),
                          group_weights={"errors": 60, "latency": 40})
    judgement = judge_canary(config, {"e": TEN, "l": TEN}, {"e": TEN, "l": TEN})
    assert judgement.group_scores == {"errors": 100.0}
    assert judgement.score == 60.0 and judgement.verdict == "fail"
    assert any("its weight counts for nothing" in r and "cannot exceed 60" in r
               for r in judgement.reasons)


def test_the_confidence_and_the_tolerance_can_be_set_as_in_kayentas_classifier():
    # Shift 5: at 98% the interval [1, 9] reaches into the dead zone +-1.25; with a
    # tolerance of 0.1 (dead zone +-0.5) it clears it.
    assert classify_metric(metric(), TEN, [v + 5 for v in TEN]).classification == "Pass"
    narrow = classify_metric(metric(), TEN, [v + 5 for v in TEN], tolerance=0.1)
    assert narrow.classification == "High"


def test_a_metric_missing_from_the_series_has_no_data():
    config = CanaryConfig((metric("a"), metric("b")))
    judgement = judge_canary(config, {"a": [1, 2]}, {"a": [1, 2], "b": [1]})
    assert judgement.metrics["b"].classification == "Nodata"


def test_half_the_metrics_without_data_force_the_score_to_zero():
    config = CanaryConfig(tuple(metric(name) for name in "abcd"))
    data = {"a": [1, 2], "b": [1, 2]}
    judgement = judge_canary(config, data, data)
    # a and b pass, c and d have no data: the group's score is 2/2 = 100, but 2 of 4 is
    # half, which forces 0.
    assert judgement.group_scores == {"default": 100.0}
    assert judgement.score == 0.0 and judgement.verdict == "fail"
    assert any("2 of 4 metrics have no data" in reason for reason in judgement.reasons)


def test_fewer_than_half_without_data_do_not_count_against_the_group():
    config = CanaryConfig(tuple(metric(name) for name in "abc"))
    data = {"a": [1, 2], "b": [1, 2]}
    judgement = judge_canary(config, data, data)
    # Nodata is left out of Pass / (Pass + High + Low + NodataFailMetric): 2 / 2.
    assert judgement.score == 100.0 and judgement.verdict == "pass"


def test_a_metric_that_must_have_data_counts_against_its_group():
    config = CanaryConfig((metric("a"), metric("b", must_have_data=True)))
    data = {"a": [1, 2]}
    judgement = judge_canary(config, data, data)
    # 1 Pass / (1 Pass + 1 NodataFailMetric) = 50.
    assert judgement.score == 50.0 and judgement.verdict == "fail"


def test_unweighted_groups_share_what_the_weights_leave():
    # errors weighs 50; latency and saturation share the other 50: 25 each.
    # errors: 1 Pass -> 100; latency: 1 Pass + 1 High -> 50; saturation: 1 High -> 0.
    # Summary: 100 * 0.50 + 50 * 0.25 + 0 * 0.25 = 62.5.
    config = CanaryConfig(
        (metric("e", groups=("errors",)), metric("l1", groups=("latency",)),
         metric("l2", groups=("latency",)), metric("s", groups=("saturation",))),
        group_weights={"errors": 50})
    baseline = {"e": TEN, "l1": TEN, "l2": TEN, "s": TEN}
    canary = {"e": TEN, "l1": TEN, "l2": [v + 6 for v in TEN], "s": [v + 6 for v in TEN]}
    judgement = judge_canary(config, baseline, canary)
    assert judgement.group_scores == {"errors": 100.0, "latency": 50.0, "saturation": 0.0}
    assert judgement.score == 62.5


def test_a_metric_in_two_groups_counts_in_both():
    config = CanaryConfig((metric("x", groups=("a", "b")), metric("y", groups=("b",))),
                          group_weights={"a": 40, "b": 60})
    judgement = judge_canary(config, {"x": TEN, "y": TEN},
                             {"x": TEN, "y": [v + 6 for v in TEN]})
    # a: 1/1 -> 100; b: x passes, y is High -> 50. 100 * 0.4 + 50 * 0.6 = 70.
    assert judgement.group_scores == {"a": 100.0, "b": 50.0}
    assert judgement.score == 70.0


@pytest.mark.parametrize(("passing", "marginal", "verdict"), [
    (80.0, 75.0, "marginal"),  # score 75.0: below pass, at marginal
    (75.0, 50.0, "pass"),      # at pass
    (95.0, 75.01, "fail"),     # just below marginal
])
def test_the_verdict_follows_the_thresholds(passing: float, marginal: float, verdict: str):
    # Four metrics, one High: 3 / 4 = 75.
    config = CanaryConfig(tuple(metric(n) for n in "abcd"), pass_threshold=passing,
                          marginal_threshold=marginal)
    data = {n: TEN for n in "abcd"}
    judgement = judge_canary(config, data, {**data, "d": [v + 6 for v in TEN]})
    assert judgement.score == 75.0
    assert judgement.verdict == verdict


def test_scores_round_half_up_to_two_decimals():
    assert round_score(66.665) == 66.67  # the double is 66.66499..., Kayenta prints 66.665
    assert round_score(200 / 3) == 66.67
    assert round_score(0.125) == 0.13
    assert round_score(12.344) == 12.34


def test_series_the_config_does_not_name_are_ignored_and_reported():
    config = CanaryConfig((metric("a"),))
    judgement = judge_canary(config, {"a": [1], "typo": [1]}, {"a": [1]})
    assert set(judgement.metrics) == {"a"}
    assert "series 'typo' ignored: the config has no such metric" in judgement.reasons


def test_the_judgement_is_plain_json():
    config = CanaryConfig((metric("zero", effect_size=EffectSize()),))
    judgement = judge_canary(config, {"zero": [0.0] * 5}, {"zero": [1.0] * 5})
    data = judgement.to_json(include_series=True)
    text = json.dumps(data, allow_nan=False)  # the NaN mean ratio became null
    assert json.loads(text)["metrics"]["zero"]["effect_size"] is None
    assert data["metrics"]["zero"]["canary_values"] == [1.0] * 5
    assert "canary_values" not in judgement.to_json()["metrics"]["zero"]
    assert data["score"] == 0.0 and data["verdict"] == "fail"
    assert data["metrics"]["zero"]["muted"] is False
