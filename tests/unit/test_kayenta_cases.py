"""Kayenta's own cases, transcribed: its judge's scorer and classifier tests, its rules for
muted metrics, failed classifications and the execution request's thresholds, and canary
configs from its repository read unchanged.

Sources (Kayenta now lives in the spinnaker/spinnaker monorepo under ``kayenta/``; the
older spinnaker/kayenta repository holds the same files without the prefix):
``kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ScorerSuite.scala`` and
``ClassifierSuite.scala``; ``kayenta-judge/src/main/scala/com/netflix/kayenta/judge/
NetflixACAJudge.scala`` and ``scorers/ScoringHelper.scala``; ``kayenta-core/src/main/java/
com/netflix/kayenta/canary/CanaryExecutionRequest.java``. Each case names the test or the
lines it comes from.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from shipyard.domain.canary_config import (
    InvalidCanaryConfig,
    ScoreThresholds,
    parse_canary_config,
    parse_execution_request,
)
from shipyard.domain.canary_judge import (
    CanaryConfig,
    Classification,
    Direction,
    EffectSize,
    MetricConfig,
    NanStrategy,
    classify_metric,
    judge_canary,
)

# ---------------------------------------------------------------------------------------
# ScorerSuite.scala: WeightedSumScorer on metric results of given classifications. Shipyard's
# scorer is reached through the judge, so each result is made from series the judge
# classifies as wanted (each case checks it did).

TEN = [float(v) for v in range(10)]
SHIFTED = [v + 6 for v in TEN]
SERIES: dict[str, tuple[list[float], list[float]]] = {
    "Pass": (TEN, TEN), "High": (TEN, SHIFTED), "Low": (SHIFTED, TEN), "Nodata": (TEN, []),
}
# (classification, group, critical)
Scored = tuple[Classification, str, bool]


def _judge(metrics: list[Scored], weights: dict[str, float]) -> tuple[float, dict[str, float]]:
    names = [f"m{i}" for i in range(len(metrics))]
    config = CanaryConfig(tuple(MetricConfig(name, (group,), critical=critical)
                                for name, (_, group, critical) in zip(names, metrics,
                                                                      strict=True)),
                          weights)
    baseline = {n: SERIES[c][0] for n, (c, _, _) in zip(names, metrics, strict=True)}
    canary = {n: SERIES[c][1] for n, (c, _, _) in zip(names, metrics, strict=True)}
    judgement = judge_canary(config, baseline, canary)
    assert [judgement.metrics[n].classification for n in names] == [c for c, _, _ in metrics]
    return judgement.score, dict(judgement.group_scores)


SCORER_SUITE: list[tuple[str, list[Scored], dict[str, float], float, list[float] | None]] = [
    # (ScorerSuite test name, metric results, groupWeights, summaryScore, sorted group scores)
    ("Weighted Sum Group Scorer: Single Metric Pass",
     [("Pass", "test-group", False)], {}, 100.0, None),
    ("Weighted Sum Group Scorer: Single Metric Fail",
     [("High", "test-group", False)], {}, 0.0, None),
    ("Weighted Sum Group Scorer: Single group Nodata",
     [("Nodata", "test-group-nodata", False)], {}, 0.0, [0.0]),
    ("Weighted Sum Group Scorer: Two Groups, one Pass, one Nodata",
     [("Pass", "test-group-pass", False), ("Pass", "test-group-pass", False),
      ("Nodata", "test-group-nodata", False)], {}, 100.0, [0.0, 100.0]),
    ("Weighted Sum Group Scorer: One Group, Two Metrics",
     [("Pass", "test-group", False), ("High", "test-group", False)], {}, 50.0, None),
    ("Weighted Sum Group Scorer: One Group, Three Metrics",
     [("Pass", "test-group", False), ("High", "test-group", False),
      ("Low", "test-group", False)], {}, 33.33, None),
    ("Weighted Sum Group Scorer: Two Groups, Three Metrics",
     [("Pass", "group-1", False), ("Pass", "group-1", False), ("High", "group-2", False)],
     {"group-1": 75.0, "group-2": 25.0}, 75.0, None),
    ("Weighted Sum Group Scorer: Two Groups, Three Metrics (Equal Weight)",
     [("Pass", "group-1", False), ("High", "group-1", False), ("High", "group-2", False)],
     {"group-1": 50.0, "group-2": 50.0}, 25.0, None),
    ("Weighted Sum Group Scorer: Two Groups, Three Metrics (Equal Weight), one NoData",
     [("Pass", "group-1", False), ("Nodata", "group-1", False), ("High", "group-2", False)],
     {"group-1": 50.0, "group-2": 50.0}, 50.0, None),
    ("Weighted Sum Group Scorer: Two Metrics, one good (normal), one fail (critical)",
     [("Pass", "test-group", False), ("High", "test-group", True)], {}, 0.0, None),
    ("Weighted Sum Group Scorer: Two Metrics, one low (normal), one good (critical)",
     [("Low", "test-group", False), ("Pass", "test-group", True)], {}, 50.0, None),
    ("Weighted Sum Group Scorer: Two Metrics, one good (normal), one nodata (critical)",
     [("Pass", "test-group", False), ("Nodata", "test-group", True)], {}, 0.0, None),
    ("Weighted Sum Group Scorer: Two Groups (Unequal Weight), Four Metrics",
     [("High", "group1", False), ("Low", "group1", False), ("Pass", "group1", False),
      ("High", "group2", False)], {"group1": 15.0, "group2": 85.0}, 5.0, None),
]


@pytest.mark.parametrize(("metrics", "weights", "summary", "groups"),
                         [case[1:] for case in SCORER_SUITE],
                         ids=[case[0] for case in SCORER_SUITE])
def test_the_scores_are_those_of_kayentas_scorer_suite(metrics: list[Scored],
                                                       weights: dict[str, float],
                                                       summary: float,
                                                       groups: list[float] | None):
    score, group_scores = _judge(metrics, weights)
    assert score == summary
    if groups is not None:
        assert sorted(group_scores.values()) == groups


# ---------------------------------------------------------------------------------------
# ClassifierSuite.scala: MannWhitneyClassifier(tolerance, confLevel, effectSizeThresholds
# (decrease, increase), criticalThresholds (decrease, increase), effectSizeMeasure)
# .classify(control, experiment, direction, nanStrategy, isCriticalMetric).

NORMAL_10 = [  # "Pass Metric" experiment: about N(10, 2)
    9.7767343120109462, 10.587071850477695, 7.8375506388901766, 9.3243326886113884,
    8.3774505409784421, 8.9359264399606282, 8.2707663324728511, 9.7484308126716925,
    11.623746715547156, 9.2753442679633942, 8.1538047749171518, 10.562020975754294,
    13.498135575451835, 11.054419256110332, 6.9538903590055092, 12.521008342195479,
    9.0216358603546443, 4.9234856699531662, 11.251360203607172, 11.598449508040337,
    8.435232204668182, 11.110228516867279, 10.70063380164755, 8.9212773652115249,
    10.086167067942661, 11.42107515483087, 9.3792347813644952, 7.7980320148552593,
    10.62339807275746, 11.909642062063739]
CONTROL_10 = [  # "Pass Metric" control: about N(10, 2)
    11.1453586774086, 9.9618059885597017, 7.068574306369829, 7.3012661810483657,
    9.7944630265656727, 9.6037918603687302, 6.1867793350339388, 12.345599159550174,
    10.371891733859533, 8.6094300785016724, 9.913162673361084, 10.361375299003466,
    14.206800387518818, 10.946153754753301, 10.215876627044048, 11.739760899484603,
    10.907627468626439, 12.823353694464775, 8.1018609771732137, 8.4981616408804932,
    12.113441374697231, 13.272210809932028, 10.114579381663297, 6.9463958767978067,
    6.2105278541727778, 10.160401684903775, 8.3457712066455461, 8.383822063895833,
    7.0020205070083765, 10.755757401808442]
HIGH_20 = [  # "High Metric" experiment: about N(20, 2)
    20.878412601720026, 21.78550581191622, 19.70828084717019, 15.859946903461562,
    19.510058772176841, 19.392005525270303, 22.926528314912101, 17.156530276709894,
    18.655117916226171, 23.422607911610392, 24.055817684156644, 22.62689958516501,
    21.979472967817678, 21.659318607218694, 20.067707574072426, 22.119570836305414,
    16.44037132663307, 21.559622826341268, 21.000181443489218, 17.779369411412663,
    17.806006358943584, 18.537200618386109, 20.555550300210797, 19.552928184468378,
    21.771118944087092, 21.809622806176627, 20.961762909905271, 20.977571577503021,
    19.106303205498794, 16.976918966987078]
CONTROL_20 = [  # "Low Metric" control: about N(20, 2)
    20.758113589510348, 22.802059629464559, 20.612340363492208, 20.973274654749986,
    23.469237330498622, 21.53133988954805, 21.767353687439805, 18.308050730374301,
    19.062145167827566, 25.879498436001779, 18.982629726336128, 19.387920182269266,
    18.995398251246982, 24.228420230932805, 20.050985172694688, 18.2340451091756,
    17.870515494460435, 23.058103863806618, 18.400259567501134, 16.971352091177167,
    19.467529066052151, 17.90465423342031, 17.553948617825831, 16.104611843907193,
    24.38171081433039, 15.919294339922635, 20.479409626304697, 19.08307201492406,
    17.455788050722866, 18.853826823235142]
CLES_PASS_EXPERIMENT = [
    0.0, 0.0, 1.46580998e-04, 0.0, 0.0, 0.0, 7.94701987e-05, 0.0, 0.0, 0.0, 2.68889486e-05,
    0.0, 0.0, 2.64935753e-05, 0.0, 0.0, 0.0, 2.61608895e-05, 1.27824931e-04, 0.0, 0.0, 0.0,
    2.54511211e-05, 2.58665287e-05, 7.63339355e-05, 0.0, 2.54239443e-05, 0.0, 0.0, 0.0,
    2.61001201e-05, 5.20101940e-05, 0.0, 2.64452319e-05, 5.27551370e-05, 7.83719533e-05,
    5.19467027e-05, 2.58344528e-05, 2.58899676e-05, 0.0, 2.59497613e-05, 2.57938043e-05,
    7.78553448e-05, 2.60593110e-05, 2.61001201e-05, 0.0, 0.0, 2.59349551e-05,
    2.60559160e-05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.58819267e-05, 0.0, 2.58825965e-05,
    2.57572635e-05, 2.56877906e-05]
CLES_PASS_CONTROL = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.91528191e-05, 0.0, 0.0, 0.0, 2.98284862e-05,
    5.99916012e-05, 0.0, 5.92276712e-05, 0.0, 2.98053709e-05, 0.0, 2.97309350e-05,
    5.92153960e-05, 0.0, 0.0, 0.0, 2.92800047e-05, 0.0, 2.94550810e-05, 0.0, 0.0, 0.0,
    5.83958656e-05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.88600289e-05,
    2.90334756e-05, 2.91740817e-05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.92765758e-05, 0.0, 0.0,
    0.0, 0.0, 0.0, 2.94637596e-05, 5.89136326e-05, 0.0, 0.0, 0.0]
CLES_HIGH_EXPERIMENT = [
    0.00689808, 0.00568664, 0.00680876, 0.00642045, 0.00561825, 0.00472294, 0.00398378,
    0.00392403, 0.00421201, 0.0047529, 0.00460853, 0.00439888, 0.00561875, 0.01998866,
    0.0124369, 0.00624391, 0.00444361, 0.00442059, 0.00372095, 0.00540736, 0.00715402,
    0.00425974, 0.00414409, 0.01172436, 0.0125959, 0.00371891, 0.00429855, 0.00369876,
    0.00325709, 0.00415943, 0.00371754, 0.00445212, 0.00521721, 0.00443938, 0.00380859,
    0.01602997, 0.00788885, 0.0038155, 0.00326921, 0.00336928, 0.00365917, 0.00333869,
    0.00427639, 0.00355911, 0.00381224, 0.00360057, 0.00349305, 0.00401164, 0.00351947,
    0.00356299, 0.003407, 0.00414397, 0.00393346, 0.00413318, 0.00359041, 0.00366314,
    0.00309383, 0.00383733, 0.00363324, 0.00280674]
CLES_HIGH_CONTROL = [
    0.00081956, 0.00239282, 0.00133685, 0.00094917, 0.00029518, 0.00035344, 0.00048194,
    0.00034893, 0.0003202, 0.00079814, 0.00090881, 0.00072599, 0.00037819, 0.00038286,
    0.00057604, 0.00064821, 0.00032194, 0.0002245, 0.00025202, 0.00071997, 0.00022721,
    0.00042578, 0.00042496, 0.00045613, 0.00037072, 0.0003317, 0.00032889, 0.00032749,
    0.00036093, 0.00029285, 0.00038401, 0.00044467, 0.00071086, 0.00036692, 0.00052079,
    0.00074974, 0.00128791, 0.00062046, 0.00086345, 0.00118563, 0.00103379, 0.00028913,
    0.00057628, 0.00057943, 0.00048735, 0.00029409, 0.0002005, 0.00016612, 0.00089312,
    0.00059367, 0.00061706, 0.00163313, 0.00097784, 0.00029305, 0.00058839, 0.00085212,
    0.00048298, 0.00035546, 0.00025866, 0.00038767]
CLES_LOW_EXPERIMENT = [
    24.24693907, 26.13330099, 22.50056744, 24.36646841, 23.19935673, 19.43801304,
    20.99654102, 18.90793651, 21.31949881, 21.83528381, 21.64211206, 23.13365968,
    21.09163134, 19.45540615, 20.74783158, 22.25527831, 19.82051791, 20.9865487,
    19.94450026, 23.2904056, 18.18408424, 22.13843542, 19.42896044, 19.84140464,
    23.91557662, 21.00981557, 21.8594633, 23.11630163, 22.95700392, 17.80045135]
CLES_LOW_CONTROL = [
    25.09626848, 26.15032198, 24.88431438, 24.18870163, 22.14684987, 28.01743443,
    21.29910501, 27.24688773, 28.64187535, 27.03504445, 24.67888311, 22.35137878,
    27.41640397, 26.00225548, 23.02118534, 25.99647292, 22.77446912, 25.56704719,
    25.57025827, 21.2721602, 23.12987357, 24.59111604, 27.48865016, 27.21967755,
    23.5951111, 22.5429607, 25.83015564, 23.31965305, 24.3911644, 25.11468194]
SMALL = [1.0, 2.2, 1.1, 2.5, 3.0]
LARGE = [20.0, 22.0, 21.0, 25.0, 30.0]
ZERO_MEAN_CRITICAL = [
    0.05000000074505806, 0.05000000074505806, 0.01666666753590107, 0.01666666753590107,
    0.01666666753590107, 0.05000000074505806, 0.03333333507180214, 0.05000000260770321,
    0.05000000260770321, 0.13333333656191826]


def _effect(allowed: tuple[float, float] | None = None,
            critical: tuple[float, float] | None = None,
            measure: str = "meanRatio") -> EffectSize:
    # Kayenta's tuples are (decrease, increase).
    lo, hi = allowed or (None, None)
    critical_lo, critical_hi = critical or (None, None)
    return EffectSize.for_measure("cles" if measure == "cles" else "meanRatio",
                                  allowed_decrease=lo, allowed_increase=hi,
                                  critical_decrease=critical_lo, critical_increase=critical_hi)


# (test name, control, experiment, direction, tolerance, confLevel, effect size,
#  nanStrategy, isCriticalMetric, classification, critical)
ClassifierCase = tuple[str, list[float], list[float], Direction, float, float, EffectSize,
                       NanStrategy, bool, Classification, bool]
MEAN = EffectSize()
CLASSIFIER_SUITE: list[ClassifierCase] = [
    ("Mann-Whitney Classifier Test: Pass Metric",
     CONTROL_10, NORMAL_10, "either", 0.10, 0.95, MEAN, "remove", False, "Pass", False),
    ("Mann-Whitney Classifier Test: High Metric",
     CONTROL_10, HIGH_20, "either", 0.10, 0.95, MEAN, "remove", False, "High", False),
    ("Mann-Whitney Classifier Test: Low Metric",
     CONTROL_20, NORMAL_10, "either", 0.10, 0.95, MEAN, "remove", False, "Low", False),
    ("Mann-Whitney Classifier Directional Test: Increase",
     CONTROL_20, NORMAL_10, "increase", 0.10, 0.95, MEAN, "remove", False, "Pass", False),
    ("Mann-Whitney Classifier Directional Test: Decrease",
     CONTROL_10, HIGH_20, "decrease", 0.10, 0.95, MEAN, "remove", False, "Pass", False),
    ("Mann-Whitney Classifier Directional Test: High Metric",
     CONTROL_10, HIGH_20, "increase", 0.10, 0.95, MEAN, "remove", False, "High", False),
    ("Mann-Whitney Classifier Directional Test: Low Metric",
     CONTROL_20, NORMAL_10, "decrease", 0.10, 0.95, MEAN, "remove", False, "Low", False),
    ("Mann-Whitney Classifier Test - Mean Ratio Effect Size: High",
     SMALL, LARGE, "either", 0.10, 0.95, _effect((0.8, 1.2)), "remove", False, "High",
     False),
    ("Mann-Whitney Classifier Test - Mean Ratio Effect Size: Low",
     CONTROL_20, NORMAL_10, "decrease", 0.10, 0.95, _effect((0.8, 1.2)), "remove", False,
     "Low", False),
    ("Mann-Whitney Classifier Test - Mean Ratio Effect Size: Pass",
     LARGE, [10.0, 12.2, 10.1, 12.5, 23.0], "either", 0.10, 0.95, _effect((0.5, 1.0)),
     "remove", False, "Pass", False),
    ("Mann-Whitney Classifier Test - CLES Effect Size: Pass",
     CLES_PASS_CONTROL, CLES_PASS_EXPERIMENT, "either", 0.20, 0.98,
     _effect((0.5, 0.8), measure="cles"), "remove", False, "Pass", False),
    ("Mann-Whitney Classifier Test - CLES Effect Size: High",
     CLES_HIGH_CONTROL, CLES_HIGH_EXPERIMENT, "either", 0.20, 0.98,
     _effect((0.2, 0.8), measure="cles"), "remove", False, "High", False),
    ("Mann-Whitney Classifier Test - CLES Effect Size: Low",
     CLES_LOW_CONTROL, CLES_LOW_EXPERIMENT, "either", 0.20, 0.98,
     _effect((0.2, 0.8), measure="cles"), "remove", False, "Low", False),
    ("Mann-Whitney Classifier Test - Critical Effect Size: Critical High",
     SMALL, LARGE, "either", 0.10, 0.95, _effect(critical=(1.0, 1.2)), "remove", True,
     "High", True),
    ("Mann-Whitney Classifier Test - Critical Effect Size: Critical Low",
     [10.0, 20.2, 10.1, 20.5, 30.0], [2.0, 2.0, 2.0, 2.0, 3.0], "either", 0.10, 0.95,
     _effect(critical=(1.2, 1.0)), "remove", True, "Low", True),
    ("Mann-Whitney Classifier Test - Critical Effect Size: High",
     SMALL, LARGE, "either", 0.10, 0.95, _effect((1.0, 5.0), (1.0, 13.0)), "remove", True,
     "High", False),
    ("Mann-Whitney Classifier Test - Critical Effect Size: Pass",
     SMALL, LARGE, "either", 0.10, 0.95, _effect((1.0, 13.0), (1.0, 15.0)), "remove", True,
     "Pass", False),
    ("Mann-Whitney Classifier Test - Critical Effect Size: Critical High (Default "
     "Thresholds)",
     SMALL, LARGE, "either", 0.10, 0.95, MEAN, "remove", True, "High", True),
    ("Mann-Whitney Tied Observations",
     [1.0, 1.0], [1.0, 1.0, 1.0], "decrease", 0.10, 0.95, MEAN, "remove", False, "Pass",
     False),
    ("Mann-Whitney Identical Populations",
     [5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0], "decrease", 0.10, 0.95, MEAN,
     "remove", False, "Pass", False),
    ("Mann-Whitney Leading Zero Identical Population",
     [1.0] * 5, [0.0, 1.0, 1.0, 1.0, 1.0], "decrease", 0.10, 0.95, MEAN, "remove", False,
     "Pass", False),
    ("Mann-Whitney Missing Experiment Data",
     [1.0, 2.0, 3.0, 4.0, 5.0], [], "decrease", 0.10, 0.95, MEAN, "remove", False, "Nodata",
     False),
    ("Mann-Whitney Missing Experiment Data: Critical Metric",
     [1.0, 2.0, 3.0, 4.0, 5.0], [], "decrease", 0.10, 0.95, MEAN, "remove", True, "Nodata",
     True),
    ("Mann-Whitney Missing Experiment Data with NaN Replacement",
     [1.0, 2.0, 3.0, 4.0, 5.0], [], "decrease", 0.10, 0.95, MEAN, "replace", False, "Pass",
     False),
    ("Mann-Whitney Majority Tied Observations",
     [1.0] * 5, [1.0, 1.0, 1.0, 1.0, 10.0], "either", 0.10, 0.95, MEAN, "remove", False,
     "Pass", False),
    ("Mann-Whitney Tied Ranks",
     [1.0] * 5, [10.0] * 5, "either", 0.10, 0.95, MEAN, "remove", False, "High", False),
    ("Mann-Whitney Tied Ranks With Zeros",
     [0.0] * 5, [10.0] * 5, "either", 0.10, 0.95, MEAN, "remove", False, "High", False),
    ("Mann-Whitney Zero Mean: High Metric with Effect Size",
     [0.0] * 5, [54.9, 54.5, 55.1, 55.6, 57.4], "either", 0.10, 0.95, _effect((0.8, 1.2)),
     "remove", False, "High", False),
    ("Mann-Whitney Zero Mean: Low Metric with Effect Size",
     [54.9, 54.5, 55.1, 55.6, 57.4], [0.0] * 5, "either", 0.10, 0.95, _effect((0.8, 1.2)),
     "remove", False, "Low", False),
    ("Mann-Whitney Zero Mean: Critical Metric",
     [0.0] * 10, ZERO_MEAN_CRITICAL, "either", 0.10, 0.95, _effect(critical=(0.8, 1.2)),
     "replace", True, "High", True),
    ("Mann-Whitney Zero Mean: Pass Metric",
     [0.0] * 5, [0.0] * 5, "either", 0.10, 0.95, _effect((0.8, 1.2)), "remove", False,
     "Pass", False),
]


@pytest.mark.parametrize(("control", "experiment", "direction", "tolerance", "confidence",
                          "effect", "nan_strategy", "critical", "classification",
                          "critical_failure"),
                         [case[1:] for case in CLASSIFIER_SUITE],
                         ids=[case[0] for case in CLASSIFIER_SUITE])
def test_the_classifications_are_those_of_kayentas_classifier_suite(
        control: list[float], experiment: list[float], direction: Direction,
        tolerance: float, confidence: float, effect: EffectSize, nan_strategy: NanStrategy,
        critical: bool, classification: Classification, critical_failure: bool):
    config = MetricConfig("m", direction=direction, nan_strategy=nan_strategy,
                          critical=critical, effect_size=effect)
    result = classify_metric(config, control, experiment, confidence=confidence,
                             tolerance=tolerance)
    assert (result.classification, result.critical_failure) == (classification,
                                                                critical_failure)


def test_a_zero_mean_leaves_the_effect_size_undefined():
    # ClassifierSuite "Mann-Whitney Zero Mean: High Metric with Effect Size" asserts
    # result.deviation.isNaN: the mean ratio of a zero baseline.
    result = classify_metric(MetricConfig("m", effect_size=_effect((0.8, 1.2))), [0.0] * 5,
                             [54.9, 54.5, 55.1, 55.6, 57.4], confidence=0.95, tolerance=0.10)
    assert result.effect_size is not None and math.isnan(result.effect_size)


def test_missing_data_gives_a_reason():
    # ClassifierSuite "Mann-Whitney Missing Data: Reason String".
    result = classify_metric(MetricConfig("m", direction="decrease", critical=True), [], [])
    assert result.classification == "Nodata" and result.reason


# ---------------------------------------------------------------------------------------
# Muted metrics. ScoringHelper.score: `val notMutedMetricResults = metricResults.filter(
# !_.isMuted)` goes to WeightedSumScorer; `buildCanaryResult(..., metricResults)` reports
# them all. NetflixACAJudge reads `analysisConfigurations.canary.muted` (default false).

def test_a_muted_metric_is_reported_with_its_classification_and_left_out_of_the_score():
    raw = {"metrics": [
        {"name": "ok", "groups": ["g"]},
        {"name": "noisy", "groups": ["g"],
         "analysisConfigurations": {"canary": {"muted": True, "critical": True}}}]}
    judgement = judge_canary(parse_canary_config(raw), {"ok": TEN, "noisy": TEN},
                             {"ok": TEN, "noisy": SHIFTED})
    noisy = judgement.to_json()["metrics"]["noisy"]
    assert (noisy["classification"], noisy["muted"], noisy["critical_failure"]) == (
        "High", True, True)
    assert judgement.score == 100.0 and judgement.group_scores == {"g": 100.0}


# ---------------------------------------------------------------------------------------
# A failed classification. NetflixACAJudge.classifyMetric catches the RuntimeException and
# builds `.classification(Error.toString).classificationReason("Metric Classification
# Failed")` without `.critical(...)`, so CanaryAnalysisResult.critical keeps its default,
# false: WeightedSumScorer.criticalFailures (`isCritical && classification != Pass`) skips
# it, calculateGroupScore counts only Pass, High, Low and NodataFailMetric, and
# tooManyNodata counts only Nodata.

def test_a_critical_metric_whose_classification_fails_neither_fails_nor_counts():
    config = CanaryConfig((MetricConfig("errors", ("errors",), critical=True),
                           MetricConfig("latency", ("latency",))),
                          {"errors": 50.0, "latency": 50.0})
    judgement = judge_canary(config, {"errors": [1.0, math.inf], "latency": TEN},
                             {"errors": [1.0, 2.0], "latency": TEN})
    errors = judgement.metrics["errors"]
    assert errors.classification == "Error" and not errors.critical_failure
    assert errors.reason.startswith("Metric Classification Failed")
    # errors has nothing judged: reported 0, counted as 100; latency passes.
    assert judgement.group_scores == {"errors": 0.0, "latency": 100.0}
    assert judgement.score == 100.0 and judgement.verdict == "pass"


# ---------------------------------------------------------------------------------------
# The execution request's thresholds. CanaryExecutionRequest holds `@NotNull
# CanaryClassifierThresholdsConfig thresholds` ({pass, marginal}); NetflixACAJudge.judge
# gets them as `scoreThresholds` and ScoringHelper classifies the score with them, whatever
# the config's (hidden) classifier.scoreThresholds say.

# kayenta-integration-tests/src/test/resources/canary-configs/prometheus/
# integration-test-cpu.json (spinnaker/spinnaker, under kayenta/), unchanged.
PROMETHEUS_CONFIG = """{
  "name": "integration-test-canary-config",
  "description": "A very simple config for integration testing",
  "judge": {
    "judgeConfigurations": {},
    "name": "NetflixACAJudge-v1.0"
  },
  "metrics": [
    {
      "name": "CPU usage for service",
      "query": {
        "type": "prometheus",
        "metricName": "integration_test_cpu",
        "customFilterTemplate": "standard-template"
      },
      "analysisConfigurations": {
        "canary": {
          "critical": true,
          "direction": "increase"
        }
      },
      "groups": [
        "pod-group"
      ],
      "scopeName": "default"
    }
  ],
  "templates": {
    "standard-template": "namespace='${namespace}', scope='${scope}'"
  },
  "classifier": {
    "groupWeights": {
      "pod-group": 100
    },
    "scoreThresholds": {
      "marginal": 50,
      "pass": 75
    }
  }
}
"""

# scratch/newrelic_adhoc_canary.json (spinnaker/kayenta), unchanged: an ad-hoc request.
NEWRELIC_ADHOC_REQUEST = """{
  "canaryConfig": {
    "name": "MySampleNewrelicCanaryConfig",
    "description": "Example Kayenta Configuration using Newrelic",
    "configVersion": "1.0",
    "applications": [
      "kayentatest"
    ],
    "judge": {
      "name": "NetflixACAJudge-v1.0",
      "judgeConfigurations": { }
    },
    "metrics": [
      {
        "name": "errorRate",
        "query": {
          "type": "newrelic",
          "select": "count(*)/uniqueCount(host)",
          "q": "httpResponseCode >= '500'"
        },
        "groups": ["err"],
        "analysisConfigurations": { },
        "scopeName": "default"
      },
      {
        "name": "transactionTime",
        "query": {
          "type": "newrelic",
          "select": "average(totalTime*1000)"
        },
        "groups": ["app"],
        "analysisConfigurations": { },
        "scopeName": "default"
      }
    ],
    "classifier": {
      "groupWeights": {
        "err": 70.0,
        "app": 30.0
      }
    }
  },
  "executionRequest": {
    "scopes": {
      "default": {
        "controlScope": {
          "type": "node",
          "scopeKey": "deployment_version",
          "scope": "appName LIKE 'PROD - MyComponent' and deployment_version like 'baseline_githash'",
          "appName": "PROD - MyComponent",
          "start": "1537783860000",
          "end": "1537785660000",
          "step": "10"
        },
        "experimentScope": {
          "type": "node",
          "scopeKey": "deployment_version",
          "scope": "experiment_githash",
          "appName": "PROD - MyComponent",
          "start": "1537783860000",
          "end": "1537785660000",
          "step": "10"
        }
      }
    },
    "thresholds": {
      "pass": 95.0,
      "marginal": 75.0
    }

  }

}
"""  # noqa: E501  (the file's own line)


def test_kayentas_prometheus_config_with_its_query_and_templates_is_read_unchanged():
    config = parse_canary_config(json.loads(PROMETHEUS_CONFIG))
    assert config == CanaryConfig(
        (MetricConfig("CPU usage for service", ("pod-group",), "increase", critical=True),),
        {"pod-group": 100.0}, 75.0, 50.0)


def test_the_execution_requests_thresholds_override_the_configs_classifier():
    # The Prometheus config with three more metrics in its group: one High of four is 75,
    # which passes the config's pass 75 but fails a request's marginal 80.
    raw = json.loads(PROMETHEUS_CONFIG)
    raw["metrics"] += [{"name": n, "groups": ["pod-group"]} for n in "abc"]
    request = {"scopes": {"default": {}}, "thresholds": {"pass": 90.0, "marginal": 80.0}}
    baseline = {"CPU usage for service": TEN, **{n: TEN for n in "abc"}}
    canary = {**baseline, "c": SHIFTED}
    own = judge_canary(parse_canary_config(raw), baseline, canary)
    assert (own.score, own.verdict) == (75.0, "pass")
    requested = parse_canary_config(raw, thresholds=parse_execution_request(request))
    assert (requested.pass_threshold, requested.marginal_threshold) == (90.0, 80.0)
    assert judge_canary(requested, baseline, canary).verdict == "fail"


def test_kayentas_adhoc_request_is_read_as_config_and_as_request():
    raw = json.loads(NEWRELIC_ADHOC_REQUEST)
    assert parse_execution_request(raw) == ScoreThresholds(95.0, 75.0)
    config = parse_canary_config(raw)
    assert config == CanaryConfig((MetricConfig("errorRate", ("err",)),
                                   MetricConfig("transactionTime", ("app",))),
                                  {"err": 70.0, "app": 30.0}, 95.0, 75.0)


def test_kayentas_graphite_sample_is_refused_for_a_weight_that_would_count_for_nothing():
    # kayenta-graphite/src/main/resources/com/netflix/kayenta/controllers/sample-config.json
    # (spinnaker/kayenta) weighs a group "requests" that no metric is in: Kayenta would
    # score it out of 50 at most. Its other extra keys ("services", "configVersion") are
    # not the problem.
    raw: dict[str, Any] = {
        "configVersion": 1.0,
        "description": "Example Automated Canary Analysis (ACA) Configuration",
        "metrics": [{"name": "CPU", "query": {"type": "graphite",
                                              "metricName": "system.cpu.user"},
                     "groups": ["system"], "analysisConfigurations": {},
                     "scopeName": "default"}],
        "services": {"graphite": {"type": "graphite", "name": "graphite"}},
        "classifier": {"groupWeights": {"requests": 50.0, "system": 50.0},
                       "scoreThresholds": {"pass": 95.0, "marginal": 75.0}},
    }
    with pytest.raises(InvalidCanaryConfig, match=r"^classifier\.groupWeights\.requests: no "
                       "metric is in group 'requests'"):
        parse_canary_config(raw)
    del raw["classifier"]["groupWeights"]["requests"]
    raw["classifier"]["groupWeights"]["system"] = 100.0
    assert parse_canary_config(raw).metrics == (MetricConfig("CPU", ("system",)),)
