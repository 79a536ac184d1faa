"""Kayenta's canary-config JSON, read into a :class:`~shipyard.domain.canary_judge.CanaryConfig`
and written back; and the canary config an app's ``app.yaml`` implies.

Only what the judge reads is kept (metric names, groups, ``analysisConfigurations.canary``,
``classifier.groupWeights``, the score thresholds); the rest of Kayenta's format (``query``,
``scopeName``, ``applications``...) is accepted and left alone. Within the judge's own
objects an unknown key is an error, so a misspelt ``mustHaveDate`` cannot pass unnoticed.
Every error is an :class:`InvalidCanaryConfig` whose message starts with the JSON path of
the bad field and says what would fix it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

from shipyard.domain.canary_judge import (
    DIRECTIONS,
    EFFECT_MEASURES,
    JUDGE_NAME,
    NAN_STRATEGIES,
    OUTLIER_STRATEGIES,
    CanaryConfig,
    Direction,
    EffectMeasure,
    EffectSize,
    MetricConfig,
    NanStrategy,
    OutlierStrategy,
)
from shipyard.domain.catalog import AppDescriptor, CanaryMetric

__all__ = ["InvalidCanaryConfig", "canary_config_for", "parse_canary_config",
           "to_kayenta_json"]

_CANARY_KEYS = ("direction", "nanStrategy", "critical", "mustHaveData", "effectSize",
                "outliers")
_EFFECT_KEYS = ("measure", "allowedIncrease", "allowedDecrease", "criticalIncrease",
                "criticalDecrease")
_OUTLIER_KEYS = ("strategy", "outlierFactor")
_THRESHOLD_KEYS = ("pass", "marginal")


class InvalidCanaryConfig(ValueError):
    """A canary config the judge cannot use; the message starts with the field's path."""


def parse_canary_config(raw: Mapping[str, Any]) -> CanaryConfig:
    """Validate Kayenta's canary-config JSON (already decoded) into a :class:`CanaryConfig`.

    Score thresholds come from ``scoreThresholds`` at the top or in ``classifier`` (where
    Kayenta's ``CanaryClassifierConfig`` keeps them), default pass 95 and marginal 75.
    """
    if not isinstance(raw, Mapping):
        raise InvalidCanaryConfig(f"(top): must be a JSON object, not {_kind(raw)}")
    judge = raw.get("judge")
    if judge is not None:
        name = _mapping(judge, "judge").get("name", JUDGE_NAME)
        if name != JUDGE_NAME:
            raise InvalidCanaryConfig(f"judge.name: {name!r} is not {JUDGE_NAME}, the only "
                                      "judge Shipyard runs; set it or leave judge out")
    entries = raw.get("metrics")
    if not isinstance(entries, list) or not entries:
        raise InvalidCanaryConfig("metrics: must be a non-empty list of metric configs")
    metrics = tuple(_metric(entry, f"metrics[{i}]") for i, entry in enumerate(entries))
    seen: set[str] = set()
    for i, metric in enumerate(metrics):
        if metric.name in seen:
            raise InvalidCanaryConfig(f"metrics[{i}].name: {metric.name!r} is used twice; "
                                      "metric names must be unique")
        seen.add(metric.name)
    classifier = _mapping(raw.get("classifier", {}), "classifier")
    groups = sorted({g for m in metrics for g in m.groups})
    weights = _group_weights(classifier.get("groupWeights", {}), groups)
    thresholds = _score_thresholds(raw, classifier)
    return CanaryConfig(metrics, weights, *thresholds)


def to_kayenta_json(config: CanaryConfig) -> dict[str, Any]:
    """Kayenta's canary-config JSON for ``config``, every setting spelt out;
    ``parse_canary_config(to_kayenta_json(c)) == c``."""
    return {
        "judge": {"name": JUDGE_NAME, "judgeConfigurations": {}},
        "metrics": [
            {
                "name": m.name,
                "groups": list(m.groups),
                "scopeName": "default",
                "analysisConfigurations": {"canary": {
                    "direction": m.direction,
                    "nanStrategy": m.nan_strategy,
                    "critical": m.critical,
                    "mustHaveData": m.must_have_data,
                    "effectSize": {
                        "measure": m.effect_size.measure,
                        "allowedIncrease": m.effect_size.allowed_increase,
                        "allowedDecrease": m.effect_size.allowed_decrease,
                        "criticalIncrease": m.effect_size.critical_increase,
                        "criticalDecrease": m.effect_size.critical_decrease,
                    },
                    "outliers": {"strategy": m.outlier_strategy,
                                 "outlierFactor": m.outlier_factor},
                }},
            }
            for m in config.metrics
        ],
        "classifier": {
            "groupWeights": dict(config.group_weights),
            "scoreThresholds": {"pass": config.pass_threshold,
                                "marginal": config.marginal_threshold},
        },
    }


def canary_config_for(descriptor: AppDescriptor, *, pass_threshold: float = 95.0,
                      marginal_threshold: float = 75.0) -> CanaryConfig:
    """The canary config an app's descriptor asks for: one metric per ``canary.metrics``
    entry, named as there, in its group, with its direction and criticality.

    The rest follows the kind: an ``error_rate`` replaces NaN with 0 (an interval without
    requests has no errors to count); a ``latency`` or ``rate`` removes NaN and must have
    data (a canary that reports none is not judged a pass). Effect sizes are Kayenta's
    defaults and groups share the score equally.
    """
    if not descriptor.canary_metrics:
        raise InvalidCanaryConfig(f"{descriptor.name}: canary.metrics: the descriptor names "
                                  "no canary metric; add some to app.yaml")
    if not 0 <= marginal_threshold <= pass_threshold <= 100:
        raise InvalidCanaryConfig("scoreThresholds: need 0 <= marginal <= pass <= 100, not "
                                  f"marginal {marginal_threshold:g}, pass {pass_threshold:g}")
    return CanaryConfig(tuple(_metric_for(m) for m in descriptor.canary_metrics), {},
                        float(pass_threshold), float(marginal_threshold))


def _metric_for(metric: CanaryMetric) -> MetricConfig:
    counts_errors = metric.kind == "error_rate"
    return MetricConfig(
        name=metric.name, groups=(metric.group,),
        direction=cast(Direction, metric.direction),
        nan_strategy="replace" if counts_errors else "remove",
        critical=metric.critical,
        must_have_data=not counts_errors and not metric.critical,
    )


def _metric(raw: object, path: str) -> MetricConfig:
    entry = _mapping(raw, path)
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidCanaryConfig(f"{path}.name: missing; give the metric a name (the key of "
                                  "its series)")
    groups = entry.get("groups")
    if (not isinstance(groups, list) or not groups
            or not all(isinstance(g, str) and g for g in groups)):
        raise InvalidCanaryConfig(f"{path}.groups: must be a non-empty list of group names, "
                                  f"not {groups!r}")
    if len(set(groups)) != len(groups):
        raise InvalidCanaryConfig(f"{path}.groups: {groups!r} names a group twice")
    analysis = _mapping(entry.get("analysisConfigurations", {}),
                        f"{path}.analysisConfigurations")
    where = f"{path}.analysisConfigurations.canary"
    canary = _mapping(analysis.get("canary", {}), where)
    _known_keys(canary, _CANARY_KEYS, where)
    direction = _choice(canary, "direction", DIRECTIONS, "either", where)
    nan_strategy = _choice(canary, "nanStrategy", NAN_STRATEGIES, "remove", where)
    critical = _flag(canary, "critical", where)
    must_have_data = _flag(canary, "mustHaveData", where)
    effect = _effect_size(canary.get("effectSize", {}), f"{where}.effectSize")
    outliers_path = f"{where}.outliers"
    outliers = _mapping(canary.get("outliers", {}), outliers_path)
    _known_keys(outliers, _OUTLIER_KEYS, outliers_path)
    strategy = _choice(outliers, "strategy", OUTLIER_STRATEGIES, "keep", outliers_path)
    factor = _number(outliers, "outlierFactor", 3.0, outliers_path)
    if factor <= 0:
        raise InvalidCanaryConfig(f"{outliers_path}.outlierFactor: {factor:g} must be above 0 "
                                  "(a number of interquartile ranges; Kayenta uses 3.0)")
    return MetricConfig(name, tuple(groups), cast(Direction, direction),
                        cast(NanStrategy, nan_strategy), critical, must_have_data, effect,
                        cast(OutlierStrategy, strategy), factor)


def _effect_size(raw: object, path: str) -> EffectSize:
    given = _mapping(raw, path)
    _known_keys(given, _EFFECT_KEYS, path)
    measure = cast(EffectMeasure, _choice(given, "measure", EFFECT_MEASURES, "meanRatio", path))
    values: dict[str, float | None] = {}
    for key in _EFFECT_KEYS[1:]:
        if key not in given:
            values[key] = None
            continue
        value = _number(given, key, 0.0, path)
        if measure == "cles" and not 0 <= value <= 1:
            raise InvalidCanaryConfig(f"{path}.{key}: {value:g} is no probability; with "
                                      "measure cles a threshold lies between 0 and 1")
        if measure == "meanRatio" and value <= 0:
            raise InvalidCanaryConfig(f"{path}.{key}: {value:g} must be above 0 (a ratio of "
                                      "means: 1.1 is 10% higher, 0.9 10% lower)")
        values[key] = value
    return EffectSize.for_measure(
        measure, allowed_increase=values["allowedIncrease"],
        allowed_decrease=values["allowedDecrease"],
        critical_increase=values["criticalIncrease"],
        critical_decrease=values["criticalDecrease"])


def _group_weights(raw: object, groups: list[str]) -> dict[str, float]:
    path = "classifier.groupWeights"
    given = _mapping(raw, path)
    weights: dict[str, float] = {}
    for group in given:
        weight = _number(given, group, 0.0, path)
        if weight < 0:
            raise InvalidCanaryConfig(f"{path}.{group}: {weight:g} must be 0 or more")
        if group not in groups:
            raise InvalidCanaryConfig(
                f"{path}.{group}: no metric is in group {group!r}, so its weight would count "
                f"for nothing; the groups are {', '.join(groups)}")
        weights[group] = weight
    total = sum(weights.values())
    unweighted = [g for g in groups if g not in weights]
    if total > 100 + 1e-9:
        raise InvalidCanaryConfig(f"{path}: the weights add up to {total:g}; they must add up "
                                  "to 100 at most")
    if weights and not unweighted and not math.isclose(total, 100):
        raise InvalidCanaryConfig(f"{path}: every group has a weight, so they must add up to "
                                  f"100, not {total:g}")
    if unweighted and math.isclose(total, 100):
        raise InvalidCanaryConfig(f"{path}: the weights add up to 100 already, leaving "
                                  f"nothing for {', '.join(unweighted)}; weigh those too or "
                                  "lower the others")
    return weights


def _score_thresholds(raw: Mapping[str, Any], classifier: Mapping[str, Any]) -> tuple[float,
                                                                                        float]:
    if "scoreThresholds" in raw and "scoreThresholds" in classifier:
        raise InvalidCanaryConfig("scoreThresholds: given both at the top and in classifier; "
                                  "keep one")
    path = "scoreThresholds" if "scoreThresholds" in raw else "classifier.scoreThresholds"
    given = _mapping(raw.get("scoreThresholds", classifier.get("scoreThresholds", {})), path)
    _known_keys(given, _THRESHOLD_KEYS, path)
    passing = _number(given, "pass", 95.0, path)
    marginal = _number(given, "marginal", 75.0, path)
    for key, value in (("pass", passing), ("marginal", marginal)):
        if not 0 <= value <= 100:
            raise InvalidCanaryConfig(f"{path}.{key}: {value:g} is no score; scores run from "
                                      "0 to 100")
    if marginal > passing:
        raise InvalidCanaryConfig(f"{path}.marginal: {marginal:g} is above pass {passing:g}; "
                                  "the marginal threshold must not exceed the pass threshold")
    return passing, marginal


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidCanaryConfig(f"{path}: must be a JSON object, not {_kind(value)}")
    return value


def _known_keys(given: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in given:
        if key not in allowed:
            raise InvalidCanaryConfig(f"{path}.{key}: unknown setting; the settings here are "
                                      f"{', '.join(allowed)}")


def _choice(given: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str,
            path: str) -> str:
    value = given.get(key, default)
    if value not in allowed:
        raise InvalidCanaryConfig(f"{path}.{key}: {value!r} is not one of "
                                  f"{', '.join(allowed)}")
    return cast(str, value)


def _flag(given: Mapping[str, Any], key: str, path: str) -> bool:
    value = given.get(key, False)
    if not isinstance(value, bool):
        raise InvalidCanaryConfig(f"{path}.{key}: {value!r} must be true or false")
    return value


def _number(given: Mapping[str, Any], key: str, default: float, path: str) -> float:
    value = given.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value):
        raise InvalidCanaryConfig(f"{path}.{key}: {value!r} must be a number")
    return float(value)


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
