"""What a canary judgement costs: ``judge_canary`` on ``--metrics`` metrics of ``--points``
points each (baseline and canary), against a bare ``scipy.stats.mannwhitneyu`` over the same
pairs, the least any Mann-Whitney judge must do. The metrics mix latencies (log-normal, a
fifth of them shifted), error counts (Poisson, heavily tied) and constants.

    .venv/bin/python bench/canary_judge.py [--metrics 20] [--points 1000] [--repeat 7]

Prints the median wall time of each and their ratio (same run, same machine: the ratio is
the figure to compare across machines). For the Hodges-Lehmann interval the judge selects
four ranks of a metric's pairwise differences (a million at 1,000 points) without forming
them (``shipyard.domain.order_statistics``): its cost grows with points log points, as the
bare test's does, where forming them grew with points squared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

from shipyard.domain.canary_judge import CanaryConfig, MetricConfig, judge_canary


def metric_sets(metrics: int, points: int) -> tuple[dict[str, list[float]],
                                                     dict[str, list[float]]]:
    rng = np.random.default_rng(2017)
    baseline: dict[str, list[float]] = {}
    canary: dict[str, list[float]] = {}
    for i in range(metrics):
        name = f"m{i:02d}"
        if i % 4 == 3:  # error counts: a few per interval, mostly tied
            baseline[name] = rng.poisson(2.0, points).astype(float).tolist()
            canary[name] = rng.poisson(2.0 if i % 8 else 3.0, points).astype(float).tolist()
        elif i % 10 == 9:  # a gauge that never moves
            baseline[name] = canary[name] = [64.0] * points
        else:  # latencies; every fifth canary is 10% slower
            shift = 1.1 if i % 5 == 0 else 1.0
            baseline[name] = rng.lognormal(-3.0, 0.4, points).tolist()
            canary[name] = (rng.lognormal(-3.0, 0.4, points) * shift).tolist()
    return baseline, canary


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up: imports, caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    baseline, canary = metric_sets(args.metrics, args.points)
    config = CanaryConfig(tuple(MetricConfig(name, direction="increase") for name in baseline))
    pairs = [(np.asarray(baseline[n]), np.asarray(canary[n])) for n in baseline]

    def bare() -> None:
        for base, can in pairs:
            stats.mannwhitneyu(can, base, alternative="two-sided")

    def judged() -> None:
        judge_canary(config, baseline, canary)

    b = median_seconds(bare, args.repeat)
    j = median_seconds(judged, args.repeat)
    verdict = judge_canary(config, baseline, canary)
    print(f"{args.metrics} metrics x {args.points} points (baseline and canary), "
          f"median of {args.repeat}:")
    print(f"  bare mannwhitneyu : {b * 1000:8.1f} ms  ({b / args.metrics * 1000:.2f} ms "
          "per metric)")
    print(f"  judge_canary      : {j * 1000:8.1f} ms  ({j / args.metrics * 1000:.2f} ms "
          "per metric)")
    print(f"  ratio judge/bare  : {j / b:.1f}x")
    print(f"  (verdict {verdict.verdict}, score {verdict.score:g})")


if __name__ == "__main__":
    main()
