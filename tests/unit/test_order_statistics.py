"""Order statistics of pairwise differences, checked against sorting every difference; and the
canary judge's shift, checked bit for bit against forming and sorting them as it used to."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
import pytest

from shipyard.domain.canary_judge import (
    CONFIDENCE,
    CanaryConfig,
    MetricConfig,
    ShiftEstimate,
    estimate_shift,
    judge_canary,
)
from shipyard.domain.order_statistics import select_pairwise_differences

Floats = npt.NDArray[np.float64]
Sampler = Callable[[np.random.Generator, int], Floats]

SAMPLERS: dict[str, Sampler] = {
    "normal": lambda rng, size: rng.normal(0.0, 1.0, size),
    "negative": lambda rng, size: -rng.lognormal(2.0, 1.0, size),
    "heavy-ties": lambda rng, size: rng.integers(-2, 3, size).astype(np.float64),
    "poisson": lambda rng, size: rng.poisson(2.0, size).astype(np.float64),
    # Sums of these round, so t - row misses the exact boundary and the counts must settle.
    "inexact": lambda rng, size: rng.choice([0.1, 0.2, 0.3, 0.7, 1e-17, 1e16, 1e16 + 2], size),
    "lognormal": lambda rng, size: rng.lognormal(-3.0, 0.4, size),
    # A constant with the judge's whisper of noise: differences crowd within 1e-4.
    "near-constant": lambda rng, size: 3.0 + rng.normal(0.0, 3e-5, size),
}


def sorted_differences(x: Sequence[float] | Floats, y: Sequence[float] | Floats) -> Floats:
    """The reference: every difference y[j] - x[i], formed and sorted."""
    return np.sort(np.subtract.outer(np.asarray(y, dtype=np.float64),
                                     np.asarray(x, dtype=np.float64)), axis=None)


def bits(values: Iterable[float]) -> list[str]:
    """Floats as their exact bits: equal strings are the same double, sign of zero included."""
    return [float(v).hex() for v in values]


def brute_force_shift(baseline: Floats, canary: Floats) -> ShiftEstimate:
    """``estimate_shift`` as it was: every difference formed and ordered, the same ranks."""
    diffs = sorted_differences(baseline, canary)
    pairs = diffs.size
    total = baseline.size + canary.size
    ties = sum(float((counts.astype(np.float64) ** 3 - counts).sum())
               for counts in (np.unique(baseline, return_counts=True)[1],
                              np.unique(canary, return_counts=True)[1]))
    variance = baseline.size * canary.size / 12 * ((total + 1) - ties / (total * (total - 1)))
    z = NormalDist().inv_cdf(1 - (1 - CONFIDENCE) / 2)
    spread = z * math.sqrt(max(variance, 0.0))
    low = min(max(math.floor(pairs / 2 - spread - 0.5), 0), pairs - 1)
    high = min(max(math.floor(pairs / 2 + spread + 0.5), 0), pairs - 1)
    middle = float((diffs[(pairs - 1) // 2] + diffs[pairs // 2]) / 2)
    return ShiftEstimate(middle, float(diffs[low]), float(diffs[high]), math.nan)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 7), (9, 1), (2, 3), (13, 5), (40, 40)])
def test_every_rank_of_a_small_problem_is_the_sorted_difference(n: int, m: int):
    rng = np.random.default_rng(n * 100 + m)
    for name, sample in SAMPLERS.items():
        x, y = sample(rng, n), sample(rng, m)
        ranks = list(range(n * m))
        assert bits(select_pairwise_differences(x, y, ranks)) == bits(
            sorted_differences(x, y)), name


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_random_ranks_of_large_and_lopsided_problems_are_the_sorted_differences(name: str):
    # Sizes beyond a band small enough to form outright (32,768), so sampling, pivots and
    # counting all run, a second round included when a pivot misses.
    rng = np.random.default_rng(sorted(SAMPLERS).index(name))
    sample = SAMPLERS[name]
    for n, m in [(1, 50_000), (50_000, 1), (3, 20_000), (180, 250), (400, 90), (700, 700)]:
        x, y = sample(rng, n), sample(rng, m) + rng.choice([0.0, 0.5])
        total = n * m
        ranks = [0, total - 1, (total - 1) // 2, total // 2,
                 *rng.integers(0, total, 8).tolist()]
        reference = sorted_differences(x, y)
        assert bits(select_pairwise_differences(x, y, ranks)) == bits(reference[ranks]), (n, m)


def test_the_ranks_of_a_thousand_points_a_side_are_the_sorted_differences():
    rng = np.random.default_rng(2017)
    x, y = rng.lognormal(-3.0, 0.4, 1000), rng.lognormal(-3.0, 0.4, 1000) * 1.1
    ranks = [470_000, 499_999, 500_000, 530_000, 0, 999_999]
    assert bits(select_pairwise_differences(x, y, ranks)) == bits(
        sorted_differences(x, y)[ranks])


def test_one_value_repeated_everywhere_is_every_rank():
    ranks = [0, 1_234, 59_999]
    assert select_pairwise_differences([2.5] * 200, [4.0] * 300, ranks) == (1.5, 1.5, 1.5)


def test_ranks_come_back_in_the_order_asked_repeats_included():
    x, y = [0.0, 10.0], [1.0, 2.0, 3.0]  # differences -9, -8, -7, 1, 2, 3
    assert select_pairwise_differences(x, y, [5, 0, 5, 3]) == (3.0, -9.0, 3.0, 1.0)


def test_differences_that_overflow_are_ordered_as_infinities():
    x, y = [-1e308, 0.0, 1e308], [-1e308, 1e308]
    with np.errstate(over="ignore"):
        reference = sorted_differences(x, y)
        assert bits(select_pairwise_differences(x, y, range(6))) == bits(reference)
    assert reference[0] == -math.inf and reference[-1] == math.inf


@pytest.mark.parametrize(("x", "y", "ranks", "message"), [
    ([], [1.0], [0], "at least one value"),
    ([1.0], [math.nan, 2.0], [0], "NaN"),
    ([1.0, 2.0], [3.0], [2], "ranks must lie in 0 .. 1"),
    ([1.0, 2.0], [3.0], [-1], "ranks must lie in 0 .. 1"),
])
def test_impossible_questions_are_refused(x: list[float], y: list[float], ranks: list[int],
                                          message: str):
    with pytest.raises(ValueError, match=message):
        select_pairwise_differences(x, y, ranks)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_the_shift_estimate_is_bit_for_bit_the_brute_force_one(name: str):
    rng = np.random.default_rng(7 + sorted(SAMPLERS).index(name))
    sample = SAMPLERS[name]
    for n, m in [(1, 1), (1, 30), (25, 2), (12, 12), (150, 90), (300, 310)]:
        baseline, canary = sample(rng, n), sample(rng, m) * rng.choice([1.0, 1.1])
        shift, reference = estimate_shift(baseline, canary), brute_force_shift(baseline, canary)
        assert bits([shift.estimate, shift.lower, shift.upper]) == bits(
            [reference.estimate, reference.lower, reference.upper]), (n, m)


def test_the_judgement_of_the_benchmark_metrics_is_the_brute_force_one():
    # bench/canary_judge.py's mix at 1,000 points: latencies (every fifth shifted), error
    # counts (tied), a constant gauge (noise added before the test).
    rng = np.random.default_rng(2017)
    baseline: dict[str, list[float]] = {}
    canary: dict[str, list[float]] = {}
    for i in range(10):
        name = f"m{i:02d}"
        if i % 4 == 3:
            baseline[name] = rng.poisson(2.0, 1000).astype(float).tolist()
            canary[name] = rng.poisson(2.0 if i % 8 else 3.0, 1000).astype(float).tolist()
        elif i == 9:
            baseline[name] = canary[name] = [64.0] * 1000
        else:
            shift = 1.1 if i % 5 == 0 else 1.0
            baseline[name] = rng.lognormal(-3.0, 0.4, 1000).tolist()
            canary[name] = (rng.lognormal(-3.0, 0.4, 1000) * shift).tolist()
    config = CanaryConfig(tuple(MetricConfig(name, direction="increase") for name in baseline))
    judgement = judge_canary(config, baseline, canary)
    judged = 0
    for name, result in judgement.metrics.items():
        if result.hl_estimate is None:
            continue
        assert result.ci_lower is not None and result.ci_upper is not None
        reference = brute_force_shift(np.asarray(baseline[name]), np.asarray(canary[name]))
        assert bits([result.hl_estimate, result.ci_lower, result.ci_upper]) == bits(
            [reference.estimate, reference.lower, reference.upper]), name
        judged += 1
    assert judged == 9  # all but the constant gauge, which passes without a test
