"""The version weights rule, with a seeded random source."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from gateway.weights import eligible_versions

BOTH = ("1.2.0", "1.3.0")


def never() -> float:
    raise AssertionError("no draw was needed")


def split(weights: dict[str, int], available: tuple[str, ...], draws: int,
          seed: int = 7) -> Counter[str]:
    rand = random.Random(seed).random  # noqa: S311 (repeatable draws, not secrets)
    chosen: Counter[str] = Counter()
    for _ in range(draws):
        [version] = eligible_versions(weights, available, rand)
        chosen[version] += 1
    return chosen


def test_without_weights_every_version_is_eligible() -> None:
    assert eligible_versions(None, BOTH, never) == set(BOTH)


def test_a_90_10_split_is_honoured() -> None:
    chosen = split({"1.2.0": 90, "1.3.0": 10}, BOTH, draws=10_000)
    assert 0.09 < chosen["1.3.0"] / 10_000 < 0.11


def test_weights_are_relative_not_percentages() -> None:
    chosen = split({"1.2.0": 3, "1.3.0": 1}, BOTH, draws=10_000)
    assert 0.23 < chosen["1.3.0"] / 10_000 < 0.27


def test_each_draw_decides_one_request() -> None:
    draws = iter([0.0, 0.89, 0.9, 0.99])
    chosen = [eligible_versions({"1.2.0": 90, "1.3.0": 10}, BOTH, lambda: next(draws))
              for _ in range(4)]
    assert chosen == [{"1.2.0"}, {"1.2.0"}, {"1.3.0"}, {"1.3.0"}]


def test_a_version_weighted_zero_gets_nothing() -> None:
    assert split({"1.2.0": 0, "1.3.0": 5}, BOTH, draws=100) == {"1.3.0": 100}


def test_a_listed_version_without_instances_gives_its_share_to_the_others() -> None:
    assert eligible_versions({"1.2.0": 90, "1.3.0": 10}, ["1.3.0"], never) == {"1.3.0"}


def test_unlisted_versions_get_nothing_while_a_weighted_one_is_available() -> None:
    assert eligible_versions({"1.2.0": 1}, ["1.2.0", "2.0.0"], never) == {"1.2.0"}


def test_unlisted_versions_share_the_traffic_when_no_weighted_one_is_available() -> None:
    assert eligible_versions({"1.2.0": 1}, ["2.0.0", "2.1.0"], never) == {"2.0.0", "2.1.0"}


@pytest.mark.parametrize("available", [["1.2.0"], []])
def test_no_version_is_eligible_when_only_zero_weighted_ones_remain(
        available: list[str]) -> None:
    assert eligible_versions({"1.2.0": 0, "1.3.0": 1}, available, never) == set()
