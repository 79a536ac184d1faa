"""Kayenta's canary-config JSON, read into a :class:`~shipyard.domain.canary_judge.CanaryConfig`
and written back; the score thresholds of Kayenta's execution request; and the canary config
an app's ``app.yaml`` implies.

A config is read as Kayenta stores it (``docs/canary-config.md``). Only what the judge reads
is kept: metric names, groups, ``analysisConfigurations.canary`` (``muted`` included),
``classifier.groupWeights`` and the score thresholds. The rest of Kayenta's format (``id``,
``name``, ``description``, ``configVersion``, ``applications``, ``createdTimestamp``,
``templates``, each metric's ``query`` and ``scopeName``, other judges'
``analysisConfigurations``...) is accepted and left alone. Within the judge's own objects an
unknown key is an error, so a misspelt ``mustHaveDate`` cannot pass unnoticed. Every error
is an :class:`InvalidCanaryConfig` whose message starts with the JSON path of the bad field
and says what would fix it.

Kayenta takes the score thresholds from the execution request
(``CanaryExecutionRequest.thresholds``); the config's own ``classifier.scoreThresholds`` is
a hidden, older place for them. :func:`parse_execution_request` reads the request's, and
``parse_canary_config(raw, thresholds=...)`` lets them override the config's. Kayenta's
ad-hoc request (``{"canaryConfig": ..., "executionRequest": ...}``) is read by both: as a
config it is judged with its own request's thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
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

__all__ = ["InvalidCanaryConfig", "ScoreThresholds", "canary_config_for",
           "parse_canary_config", "parse_execution_request", "to_kayenta_json"]

_CANARY_KEYS = ("direction", "nanStrategy", "critical", "mustHaveData", "muted", "effectSize",
                "outliers")
_EFFECT_KEYS = ("measure", "allowedIncrease", "allowedDecrease", "criticalIncrease",
                "criticalDecrease")
_OUTLIER_KEYS = ("strategy", "outlierFactor")
_THRESHOLD_KEYS = ("pass", "marginal")


class InvalidCanaryConfig(ValueError):
    """A canary config or execution request the judge cannot use; the message starts with
    the field's path."""


@dataclass(frozen=True, slots=True)
class ScoreThresholds:
    """The verdict's thresholds (Kayenta's ``CanaryClassifierThresholdsConfig``): a score at
    or above ``pass_threshold`` passes, at or above ``marginal_threshold`` is marginal, and
    below fails."""

    pass_threshold: float = 95.0
    marginal_threshold: float = 75.0


def parse_canary_config(raw: Mapping[str, Any], *,
                        thresholds: ScoreThresholds | None = None) -> CanaryConfig:
    """Validate Kayenta's canary-config JSON (already decoded) into a :class:`CanaryConfig`.

    The score thresholds are ``thresholds`` when given, as Kayenta judges with those of the
    execution request (:func:`parse_execution_request`). Otherwise they come from the
    config's ``scoreThresholds``, at the top or in ``classifier`` (where Kayenta's
    ``CanaryClassifierConfig`` keeps them), default pass 95 and marginal 75; the config's are
    validated either way. An ad-hoc request is read as its ``canaryConfig`` with its
    ``executionRequest``'s thresholds.
    """
    if not isinstance(raw, Mapping):
        raise InvalidCanaryConfig(f"(top): must be a JSON object, not {_kind(raw)}")
    if _is_adhoc(raw):
        if thresholds is None and "executionRequest" in raw:
            thresholds = parse_execution_request(raw)
        inner = _mapping(raw["canaryConfig"], "canaryConfig")
        try:
            return parse_canary_config(inner, thresholds=thresholds)
        except InvalidCanaryConfig as err:
            raise InvalidCanaryConfig(f"canaryConfig.{err}") from None
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
    own = _score_thresholds(raw, classifier)
    config = CanaryConfig(metrics, weights, own.pass_threshold, own.marginal_threshold)
    if thresholds is None:
        return config
    return replace(config, pass_threshold=thresholds.pass_threshold,
                   marginal_threshold=thresholds.marginal_threshold)


def parse_execution_request(raw: Mapping[str, Any]) -> ScoreThresholds:
    """The score thresholds of Kayenta's execution request (already decoded JSON).

    A ``CanaryExecutionRequest`` holds them as ``thresholds: {"pass": 95, "marginal": 75}``,
    both required, as in Kayenta; an ad-hoc request (``{"canaryConfig": ...,
    "executionRequest": ...}``) holds them in its ``executionRequest``. The rest of the
    request (``scopes``, ``metadata``, ``siteLocal``) tells Kayenta where to fetch the
    metrics, which Shipyard is given instead, and is left alone. Errors are
    :class:`InvalidCanaryConfig`, their message starting with the field's path.
    """
    if not isinstance(raw, Mapping):
        raise InvalidCanaryConfig(f"(top): must be a JSON object, not {_kind(raw)}")
    request, prefix = raw, ""
    if _is_adhoc(raw):
        request = _mapping(raw.get("executionRequest"), "executionRequest")
        prefix = "executionRequest."
    path = f"{prefix}thresholds"
    if "thresholds" not in request:
        raise InvalidCanaryConfig(f"{path}: missing; Kayenta's execution request gives the "
                                  'score thresholds, e.g. {"pass": 95, "marginal": 75}')
    given = _mapping(request["thresholds"], path)
    for key in _THRESHOLD_KEYS:
        if key not in given:
            raise InvalidCanaryConfig(f"{path}.{key}: missing; Kayenta's execution request "
                                      "gives both pass and marginal")
    return _thresholds(given, path)


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
                    "muted": m.muted,
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
    muted = _flag(canary, "muted", where)
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
                        cast(OutlierStrategy, strategy), factor, muted)


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
                f"for nothing and Kayenta would cap the score at 100 minus it; remove it or "
                f"weigh one of the groups: {', '.join(groups)}")
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


def _score_thresholds(raw: Mapping[str, Any],
                      classifier: Mapping[str, Any]) -> ScoreThresholds:
    if "scoreThresholds" in raw and "scoreThresholds" in classifier:
        raise InvalidCanaryConfig("scoreThresholds: given both at the top and in classifier; "
                                  "keep one")
    path = "scoreThresholds" if "scoreThresholds" in raw else "classifier.scoreThresholds"
    given = _mapping(raw.get("scoreThresholds", classifier.get("scoreThresholds", {})), path)
    return _thresholds(given, path)


def _thresholds(given: Mapping[str, Any], path: str) -> ScoreThresholds:
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
    return ScoreThresholds(passing, marginal)


def _is_adhoc(raw: Mapping[str, Any]) -> bool:
    # Kayenta's CanaryAdhocExecutionRequest wraps a config and a request; a config itself
    # has its metrics at the top.
    return "canaryConfig" in raw and "metrics" not in raw


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
