"""Kayenta's NetflixACAJudge-v1.0 as pure functions: classify each metric of a canary against
its baseline with a Mann-Whitney test, then score the groups and give a verdict.

The rules are Kayenta's (``kayenta-judge``: ``NetflixACAJudge``, ``MannWhitneyClassifier``,
``ScoringHelper``, ``WeightedSumScorer``, ``ThresholdScoreClassifier``;
``kayenta-mannwhitney``: ``MannWhitney``), summarised in
``shared/reference/delivery-systems.md`` section 2:

1. NaN values are removed (``nanStrategy: remove``, the default) or read as 0 (``replace``).
2. Outliers are kept (the default) or removed outside IQR fences of ``outlierFactor`` (3.0)
   interquartile ranges, widened to at least the 1st and 99th percentiles.
3. A series left empty is ``Nodata`` (``NodataFailMetric`` when ``mustHaveData`` and the
   metric is not critical) under ``remove``, and ``Pass`` under ``replace``.
4. Identical data, or one value throughout both series, is ``Pass``. Two constant series get
   Gaussian noise of 1e-5 x their value (from a fixed seed, so a judgement is repeatable).
5. The shift of the canary over the baseline is the Hodges-Lehmann estimate with its 98%
   confidence interval. The canary is ``High`` when the interval lies above a dead zone of
   +-0.25 x |estimate| and the effect size reaches ``allowedIncrease``, ``Low`` in the mirror
   case; the direction says which of the two count.
6. A critical metric fails the whole canary when it is High or Low beyond
   ``criticalIncrease``/``criticalDecrease``, or when it has no data (``Nodata``).
7. A metric whose classification fails is ``Error``. Kayenta's judge catches the exception
   and builds the result without its criticality, so an Error never fails the canary, not
   even on a critical metric, and it counts in no group: it is left out of the score.
   Shipyard's Error is where Kayenta's test would throw: series holding infinities.
8. Muted metrics (``muted: true``) are classified and reported, then left out of everything
   that follows (Kayenta's ``ScoringHelper`` filters them before the scorer).
9. Group score = Pass / (Pass + High + Low + NodataFailMetric) x 100. A group with none of
   these is reported as 0 and counts as 100 in the summary. The summary weighs groups by
   ``groupWeights``, the unweighted sharing what is left of 100, and is rounded to 2
   decimals; it is 0 after a critical failure or when half the metrics or more have no data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from statistics import NormalDist
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy import stats  # type: ignore[import-untyped]

from shipyard.domain.order_statistics import select_pairwise_differences

__all__ = [
    "CONFIDENCE", "DIRECTIONS", "EFFECT_DEFAULTS", "EFFECT_MEASURES", "JUDGE_NAME",
    "NAN_STRATEGIES", "OUTLIER_STRATEGIES", "TOLERANCE", "CanaryConfig", "Classification",
    "Direction",
    "EffectMeasure", "EffectSize", "Judgement", "MetricConfig", "MetricResult", "NanStrategy",
    "OutlierStrategy", "SeriesStats", "ShiftEstimate", "Verdict", "classify_metric",
    "estimate_shift", "judge_canary", "round_score",
]

JUDGE_NAME = "NetflixACAJudge-v1.0"
CONFIDENCE = 0.98
"""NetflixACAJudge's confidence level (hard-coded there; the classifier's own default is 0.95)."""
TOLERANCE = 0.25
"""Half-width of the dead zone around zero, as a fraction of |Hodges-Lehmann estimate|."""
NOISE_SCALE = 1e-5
NOISE_SEED = 20170410
NODATA_SHARE = 0.5

Direction = Literal["increase", "decrease", "either"]
NanStrategy = Literal["remove", "replace"]
OutlierStrategy = Literal["keep", "remove"]
EffectMeasure = Literal["meanRatio", "cles"]
Classification = Literal["Pass", "High", "Low", "Nodata", "NodataFailMetric", "Error"]
Verdict = Literal["pass", "marginal", "fail"]

DIRECTIONS: tuple[str, ...] = get_args(Direction)
NAN_STRATEGIES: tuple[str, ...] = get_args(NanStrategy)
OUTLIER_STRATEGIES: tuple[str, ...] = get_args(OutlierStrategy)
EFFECT_MEASURES: tuple[str, ...] = get_args(EffectMeasure)
EFFECT_DEFAULTS: Mapping[str, float] = {"meanRatio": 1.0, "cles": 0.5}
"""Every threshold of an effect size measure defaults to this (Kayenta's defaults)."""

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class EffectSize:
    """How large a significant change must be to count (``allowed_*``) and to fail the whole
    canary on a critical metric (``critical_*``).

    ``meanRatio`` is canary mean / baseline mean (undefined when either mean is 0);
    ``cles`` is the probability that a canary value exceeds a baseline value (ties count
    half). The defaults here are meanRatio's; :meth:`for_measure` gives each measure its own.
    """

    measure: EffectMeasure = "meanRatio"
    allowed_increase: float = 1.0
    allowed_decrease: float = 1.0
    critical_increase: float = 1.0
    critical_decrease: float = 1.0

    @classmethod
    def for_measure(cls, measure: EffectMeasure, *, allowed_increase: float | None = None,
                    allowed_decrease: float | None = None,
                    critical_increase: float | None = None,
                    critical_decrease: float | None = None) -> EffectSize:
        """The measure with the thresholds given, the others at its default (1.0 for
        meanRatio, 0.5 for cles)."""
        default = EFFECT_DEFAULTS[measure]

        def pick(value: float | None) -> float:
            return default if value is None else float(value)

        return cls(measure, pick(allowed_increase), pick(allowed_decrease),
                   pick(critical_increase), pick(critical_decrease))


@dataclass(frozen=True, slots=True)
class MetricConfig:
    """One metric's ``analysisConfigurations.canary`` in Kayenta's canary config."""

    name: str
    groups: tuple[str, ...] = ("default",)
    direction: Direction = "either"
    nan_strategy: NanStrategy = "remove"
    critical: bool = False
    must_have_data: bool = False
    effect_size: EffectSize = field(default_factory=EffectSize)
    outlier_strategy: OutlierStrategy = "keep"
    outlier_factor: float = 3.0
    muted: bool = False
    """Classified and reported, but left out of the score (module docstring, step 8)."""


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    """The metrics to judge, the weight of each group (percent; unweighted groups share
    what is left of 100), and the score thresholds of the verdict."""

    metrics: tuple[MetricConfig, ...]
    group_weights: Mapping[str, float] = field(default_factory=dict)
    pass_threshold: float = 95.0
    marginal_threshold: float = 75.0


@dataclass(frozen=True, slots=True)
class SeriesStats:
    """Summary of one cleaned series; all but ``count`` are None when it is empty."""

    count: int
    mean: float | None = None
    median: float | None = None
    min: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Floats) -> SeriesStats:
        if values.size == 0:
            return cls(0)
        return cls(int(values.size), float(values.mean()), float(np.median(values)),
                   float(values.min()), float(values.max()))


@dataclass(frozen=True, slots=True)
class ShiftEstimate:
    """The canary's shift over the baseline: Hodges-Lehmann estimate, its confidence
    interval and the Mann-Whitney p-value (two-sided)."""

    estimate: float
    lower: float
    upper: float
    p_value: float


@dataclass(frozen=True, slots=True)
class MetricResult:
    """What the judge found for one metric. ``effect_size`` is NaN where the measure is
    undefined; the statistics of the test are None where the test did not run (no data,
    a shortcut, an error). ``baseline_values``/``canary_values`` are the series as judged:
    after NaN and outlier handling, before any tie-breaking noise. ``critical_failure`` is
    the classification's, as Kayenta reports it; it fails the canary unless ``muted``."""

    name: str
    classification: Classification
    critical_failure: bool
    reason: str
    groups: tuple[str, ...]
    critical: bool
    baseline: SeriesStats
    canary: SeriesStats
    effect_measure: EffectMeasure
    effect_size: float | None = None
    p_value: float | None = None
    hl_estimate: float | None = None
    ci_lower: float | None = None
    ci_upper: float | None = None
    baseline_values: tuple[float, ...] = ()
    canary_values: tuple[float, ...] = ()
    muted: bool = False

    def to_json(self, *, include_series: bool = False) -> dict[str, Any]:
        """Plain JSON types; NaN and infinities become null."""
        data: dict[str, Any] = {
            "classification": self.classification,
            "critical_failure": self.critical_failure,
            "reason": self.reason,
            "groups": list(self.groups),
            "critical": self.critical,
            "muted": self.muted,
            "p_value": _finite(self.p_value),
            "hl_estimate": _finite(self.hl_estimate),
            "ci_lower": _finite(self.ci_lower),
            "ci_upper": _finite(self.ci_upper),
            "effect_size": _finite(self.effect_size),
            "effect_measure": self.effect_measure,
            "baseline": _stats_json(self.baseline),
            "canary": _stats_json(self.canary),
        }
        if include_series:
            data["baseline_values"] = [_finite(v) for v in self.baseline_values]
            data["canary_values"] = [_finite(v) for v in self.canary_values]
        return data


@dataclass(frozen=True, slots=True)
class Judgement:
    """The summary score (0-100, 2 decimals), its verdict, each metric's result, each
    group's score, and why the score is what it is (forced to 0, below a threshold)."""

    score: float
    verdict: Verdict
    metrics: Mapping[str, MetricResult]
    group_scores: Mapping[str, float]
    reasons: tuple[str, ...] = ()

    def to_json(self, *, include_series: bool = False) -> dict[str, Any]:
        """``{"score", "verdict", "reasons", "group_scores", "metrics": {name: {...}}}``."""
        return {
            "score": self.score,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "group_scores": dict(self.group_scores),
            "metrics": {name: result.to_json(include_series=include_series)
                        for name, result in self.metrics.items()},
        }


def judge_canary(config: CanaryConfig, baseline: Mapping[str, Sequence[float | None]],
                 canary: Mapping[str, Sequence[float | None]]) -> Judgement:
    """Judge every metric of ``config`` on its baseline and canary series (None and NaN are
    missing points; a metric absent from a mapping has no data), then score the canary.

    Every metric is classified and reported; muted ones are then left out of the score, as
    Kayenta's ``ScoringHelper`` leaves them out of ``WeightedSumScorer``. Series named by no
    metric of the config are left out, and the reasons say so, as they say whatever else
    Kayenta does quietly: a group with nothing to score, a weight that counts for nothing, a
    metric whose classification failed.
    """
    results = {m.name: classify_metric(m, baseline.get(m.name, ()), canary.get(m.name, ()))
               for m in config.metrics}
    known = set(results)
    reasons = [f"series {name!r} ignored: the config has no such metric"
               for name in sorted((set(baseline) | set(canary)) - known)]
    scored = [r for r in results.values() if not r.muted]
    reasons += [f"metric {r.name!r} is muted: classified {r.classification} and reported, "
                "left out of the score" for r in results.values() if r.muted]
    reasons += [f"metric {r.name!r} could not be classified ({r.reason}): left out of the "
                "score" + (", although it is critical," if r.critical else "")
                + " as Kayenta leaves a metric whose classification failed"
                for r in scored if r.classification == "Error"]
    tallies = _group_tallies(scored)
    lost = {g: w for g, w in config.group_weights.items() if g not in tallies and w}
    if lost and scored:
        count = "its weight counts" if len(lost) == 1 else "their weights count"
        reasons.append(f"{_listing('group', sorted(lost))} no metric left to score (all "
                       f"muted): {count} for nothing, as in Kayenta, so the score cannot "
                       f"exceed {100 - sum(lost.values()):g}")
    empty = sorted(g for g, (_, judged) in tallies.items() if not judged)
    if empty:
        reasons.append(f"{_listing('group', empty)} no metric judged Pass, High, Low or "
                       "NodataFailMetric: reported as 0 and counted as 100 in the summary, "
                       "as Kayenta's WeightedSumScorer does")
    score = _summary_score(tallies, config.group_weights)
    critical = [r for r in scored if r.critical_failure]
    nodata = [r for r in scored if r.classification == "Nodata"]
    if not scored:
        score = 0.0
        reasons.append("every metric is muted: nothing to score" if results
                       else "no metrics to judge")
    for result in critical:
        score = 0.0
        reasons.append(f"critical metric {result.name!r} failed ({result.classification}): "
                       f"{result.reason}")
    if scored and len(nodata) >= NODATA_SHARE * len(scored):
        score = 0.0
        unmuted = "unmuted " if len(scored) < len(results) else ""
        reasons.append(f"{len(nodata)} of {len(scored)} {unmuted}metrics have no data "
                       f"({', '.join(r.name for r in nodata)}): half or more")
    score = round_score(score)
    if score >= config.pass_threshold:
        verdict: Verdict = "pass"
    elif score >= config.marginal_threshold:
        verdict = "marginal"
        reasons.append(f"score {score:g} is below the pass threshold "
                       f"{config.pass_threshold:g} but reaches the marginal "
                       f"{config.marginal_threshold:g}")
    else:
        verdict = "fail"
        reasons.append(f"score {score:g} is below the marginal threshold "
                       f"{config.marginal_threshold:g}")
    group_scores = {g: round_score(100.0 * passed / judged if judged else 0.0)
                    for g, (passed, judged) in tallies.items()}
    return Judgement(score, verdict, results, group_scores, tuple(reasons))


def classify_metric(config: MetricConfig, baseline: Iterable[float | None],
                    canary: Iterable[float | None], *, confidence: float = CONFIDENCE,
                    tolerance: float = TOLERANCE) -> MetricResult:
    """Classify one metric as Kayenta's ``MannWhitneyClassifier`` does (module docstring,
    steps 1 to 7).

    The judge always classifies at NetflixACAJudge's ``confidence`` 0.98 and ``tolerance``
    0.25; like the classifier's constructor, this function takes others, which Kayenta's own
    classifier tests use.
    """
    base = _clean(baseline, config)
    can = _clean(canary, config)
    effect = config.effect_size

    def result(classification: Classification, reason: str, *, critical_failure: bool = False,
               effect_size: float | None = None,
               shift: ShiftEstimate | None = None) -> MetricResult:
        return MetricResult(
            config.name, classification, critical_failure, reason, config.groups,
            config.critical, SeriesStats.of(base), SeriesStats.of(can), effect.measure,
            effect_size, shift.p_value if shift else None, shift.estimate if shift else None,
            shift.lower if shift else None, shift.upper if shift else None,
            tuple(base.tolist()), tuple(can.tolist()), config.muted)

    if base.size == 0 or can.size == 0:
        missing = " and ".join(label for label, s in (("baseline", base), ("canary", can))
                               if s.size == 0)
        if config.nan_strategy == "replace":
            return result("Pass", f"no {missing} data; with nanStrategy replace that passes")
        if config.must_have_data and not config.critical:
            return result("NodataFailMetric", f"no {missing} data, and mustHaveData is set")
        return result("Nodata", f"no {missing} data", critical_failure=config.critical)
    if not (np.isfinite(base).all() and np.isfinite(can).all()):
        # Kayenta's judge builds the result of a failed classification without its
        # criticality: even a critical metric's Error fails nothing (module docstring, 7).
        return result("Error", "Metric Classification Failed: the series hold infinite "
                      "values, which the test cannot rank")
    effect_size = _effect_size(effect.measure, base, can)
    if np.array_equal(np.sort(base), np.sort(can)):
        return result("Pass", "the baseline and canary data are identical",
                      effect_size=effect_size)
    if np.unique(np.concatenate([base, can])).size == 1:
        return result("Pass", "every value of both series is the same",
                      effect_size=effect_size)

    test_base, test_can = base, can
    if np.unique(base).size == 1 and np.unique(can).size == 1:
        # Two constants leave nothing to rank; a whisper of noise lets the test run, as
        # Kayenta does. Seeded, so the same data always gets the same judgement.
        rng = np.random.default_rng(NOISE_SEED)
        test_base = base + rng.normal(0.0, NOISE_SCALE * abs(base[0]), base.size)
        test_can = can + rng.normal(0.0, NOISE_SCALE * abs(can[0]), can.size)
    shift = estimate_shift(test_base, test_can, confidence=confidence)
    dead_zone = tolerance * abs(shift.estimate)
    gate = "" if math.isnan(effect_size) else f", {effect.measure} {effect_size:.4g}"
    interval = (f"the {confidence:.0%} interval of the shift [{shift.lower:.4g}, "
                f"{shift.upper:.4g}] (estimate {shift.estimate:.4g})")

    above, below = shift.lower > dead_zone, shift.upper < -dead_zone
    high = above and config.direction in ("increase", "either")
    low = below and config.direction in ("decrease", "either")
    if high and _at_least(effect_size, effect.allowed_increase):
        critical = config.critical and _at_least(effect_size, effect.critical_increase)
        return result("High", f"canary is higher: {interval} lies above the dead zone "
                      f"+-{dead_zone:.4g}{gate}", critical_failure=critical,
                      effect_size=effect_size, shift=shift)
    if low and _at_most(effect_size, effect.allowed_decrease):
        critical = config.critical and _at_most(effect_size, effect.critical_decrease)
        return result("Low", f"canary is lower: {interval} lies below the dead zone "
                      f"+-{dead_zone:.4g}{gate}", critical_failure=critical,
                      effect_size=effect_size, shift=shift)
    if high or low:
        side, bound = (("allowedIncrease", effect.allowed_increase) if high
                       else ("allowedDecrease", effect.allowed_decrease))
        reason = (f"{interval} is beyond the dead zone, but {effect.measure} "
                  f"{effect_size:.4g} does not reach {side} {bound:g}")
    elif above or below:
        reason = (f"canary is {'higher' if above else 'lower'}: {interval}, which direction "
                  f"{config.direction} does not count")
    else:
        reason = f"{interval} reaches into the dead zone +-{dead_zone:.4g}"
    return result("Pass", reason, effect_size=effect_size, shift=shift)


def estimate_shift(baseline: npt.ArrayLike, canary: npt.ArrayLike, *,
                   confidence: float = CONFIDENCE) -> ShiftEstimate:
    """The Hodges-Lehmann estimate of ``canary - baseline`` with its confidence interval,
    and scipy's two-sided Mann-Whitney p-value. Both series must be non-empty and finite.

    Kayenta (``MannWhitney.calculateConfidenceInterval``, after R's ``wilcox.test``) finds
    the interval by root-finding on the standardised rank-sum statistic of ``canary - mu``
    against the baseline, with a continuity correction of 0.5 and the tie-corrected
    variance. That statistic changes only where ``mu`` crosses a pairwise difference, so
    its roots are order statistics of the sorted pairwise differences ``d``: with ``N`` pairs,
    ``sigma`` the rank-sum's standard deviation (ties within each series corrected for) and
    ``z`` the two-sided normal quantile, the bounds are ``d[floor(N/2 - z*sigma - 0.5)]`` and
    ``d[floor(N/2 + z*sigma + 0.5)]`` (0-based, clamped to the ends, where Kayenta stops at
    the range of the differences). Computing them directly gives the exact points that
    Kayenta's solver converges to. The estimate is the median of ``d``: a root of the same
    equation, and the one R and the literature call the Hodges-Lehmann estimate. All of
    them are selected from ``d`` without forming it (:mod:`.order_statistics`).

    Kayenta computes no p-value: its ``MannWhitney`` returns the interval and the estimate
    only. The p-value here is scipy's two-sided Mann-Whitney U test (``mannwhitneyu``,
    normal approximation, tie-corrected variance, no continuity correction), reported for
    information only: the judge classifies on the interval, never on the p-value.
    """
    base = np.asarray(baseline, dtype=np.float64)
    can = np.asarray(canary, dtype=np.float64)
    n_base, n_can = base.size, can.size
    if n_base == 0 or n_can == 0:
        raise ValueError("estimate_shift needs at least one value in each series")
    pairs = n_base * n_can
    ties = _tie_sum(base) + _tie_sum(can)
    total = n_base + n_can
    variance = n_base * n_can / 12 * ((total + 1) - ties / (total * (total - 1)))
    sigma = math.sqrt(max(variance, 0.0))
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    low_index = math.floor(pairs / 2 - z * sigma - 0.5)
    high_index = math.floor(pairs / 2 + z * sigma + 0.5)
    lower, below_middle, above_middle, upper = select_pairwise_differences(
        base, can, (min(max(low_index, 0), pairs - 1), (pairs - 1) // 2, pairs // 2,
                    min(max(high_index, 0), pairs - 1)))
    estimate = (below_middle + above_middle) / 2
    p_value = float(stats.mannwhitneyu(can, base, alternative="two-sided",
                                       use_continuity=False, method="asymptotic").pvalue)
    return ShiftEstimate(estimate, lower, upper, p_value)


def round_score(score: float) -> float:
    """Two decimals, halves rounded up, as Kayenta's ``BigDecimal.setScale(2, HALF_UP)``
    on the printed double (66.665 gives 66.67)."""
    return float(Decimal(repr(score)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _clean(values: Iterable[float | None], config: MetricConfig) -> Floats:
    series = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    nan = np.isnan(series)
    series = np.where(nan, 0.0, series) if config.nan_strategy == "replace" else series[~nan]
    if config.outlier_strategy == "remove" and series.size and np.isfinite(series).all():
        p1, p25, p75, p99 = np.percentile(series, [1, 25, 75, 99])
        spread = config.outlier_factor * (p75 - p25)
        lower, upper = min(p25 - spread, p1), max(p75 + spread, p99)
        series = series[(series >= lower) & (series <= upper)]
    return series


def _effect_size(measure: EffectMeasure, base: Floats, can: Floats) -> float:
    if measure == "cles":
        ordered = np.sort(base)
        below = np.searchsorted(ordered, can, side="left").sum()
        at_or_below = np.searchsorted(ordered, can, side="right").sum()
        # ties count half: (below + at_or_below) / 2 counts the pairs canary > baseline
        return float((below + at_or_below) / 2 / (base.size * can.size))
    base_mean, can_mean = float(base.mean()), float(can.mean())
    if base_mean == 0 or can_mean == 0:
        return math.nan
    return can_mean / base_mean


def _at_least(effect: float, threshold: float) -> bool:
    # An undefined effect size (a zero mean) skips the gate rather than failing it.
    return math.isnan(effect) or effect >= threshold


def _at_most(effect: float, threshold: float) -> bool:
    return math.isnan(effect) or effect <= threshold


def _tie_sum(values: Floats) -> float:
    _, counts = np.unique(values, return_counts=True)
    return float((counts.astype(np.float64) ** 3 - counts).sum())


def _group_tallies(results: Iterable[MetricResult]) -> dict[str, tuple[int, int]]:
    # Per group: (Pass, Pass + High + Low + NodataFailMetric); Nodata and Error count in
    # neither, as in Kayenta's WeightedSumScorer.
    tallies: dict[str, tuple[int, int]] = {}
    for result in results:
        judged = result.classification in ("Pass", "High", "Low", "NodataFailMetric")
        for group in result.groups:
            passed, total = tallies.get(group, (0, 0))
            tallies[group] = (passed + (result.classification == "Pass"), total + judged)
    return tallies


def _summary_score(tallies: Mapping[str, tuple[int, int]],
                   weights: Mapping[str, float]) -> float:
    # Weights of groups no scored metric is in count for nothing, and a group with nothing
    # judged counts as 100 (its reported score is 0), as in Kayenta.
    unweighted = [g for g in tallies if g not in weights]
    share = (100.0 - sum(weights.values())) / len(unweighted) if unweighted else 0.0
    return sum((100.0 * passed / judged if judged else 100.0) * weights.get(group, share) / 100
               for group, (passed, judged) in tallies.items())


def _listing(noun: str, names: Sequence[str]) -> str:
    quoted = ", ".join(repr(n) for n in names)
    return f"{noun} {quoted} has" if len(names) == 1 else f"{noun}s {quoted} have"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _stats_json(series: SeriesStats) -> dict[str, Any]:
    return {"count": series.count, "mean": _finite(series.mean),
            "median": _finite(series.median), "min": _finite(series.min),
            "max": _finite(series.max)}
