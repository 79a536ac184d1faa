"""Kayenta's canary-config JSON: read, refused with the path of the bad field, written back;
and the config each app's ``app.yaml`` implies."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard.domain.canary_config import (
    InvalidCanaryConfig,
    ScoreThresholds,
    canary_config_for,
    parse_canary_config,
    parse_execution_request,
    to_kayenta_json,
)
from shipyard.domain.canary_judge import (
    CanaryConfig,
    EffectSize,
    MetricConfig,
    judge_canary,
)
from shipyard.domain.catalog import AppDescriptor, parse_descriptor

PROJECT = Path(__file__).resolve().parents[2]
APP_FILES = sorted((PROJECT / "apps").glob("*/app.yaml"))

# The example of shared/reference/delivery-systems.md section 2, with a second metric.
KAYENTA_EXAMPLE: dict[str, Any] = {
    "name": "example", "applications": ["ad-hoc"],
    "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
    "metrics": [
        {"name": "5xx", "query": {"type": "prometheus", "metricName": "http_5xx"},
         "groups": ["errors"], "scopeName": "default",
         "analysisConfigurations": {"canary": {
             "direction": "increase", "nanStrategy": "replace", "critical": True,
             "mustHaveData": False,
             "effectSize": {"allowedIncrease": 1.1, "criticalIncrease": 5.0},
             "outliers": {"strategy": "keep"}}}},
        {"name": "p99", "groups": ["latency"], "scopeName": "default",
         "analysisConfigurations": {"canary": {}}},
        {"name": "cpu", "groups": ["latency"]},
    ],
    "classifier": {"groupWeights": {"errors": 60, "latency": 40}},
}


def example() -> dict[str, Any]:
    return copy.deepcopy(KAYENTA_EXAMPLE)


def test_kayentas_example_is_read_with_its_settings_and_the_defaults():
    config = parse_canary_config(example())
    errors, latency, cpu = config.metrics
    assert errors == MetricConfig(
        "5xx", ("errors",), "increase", "replace", critical=True, must_have_data=False,
        effect_size=EffectSize("meanRatio", 1.1, 1.0, 5.0, 1.0))
    assert latency == MetricConfig("p99", ("latency",))
    assert cpu == MetricConfig("cpu", ("latency",))
    assert (latency.direction, latency.nan_strategy, latency.outlier_strategy) == (
        "either", "remove", "keep")
    assert config.group_weights == {"errors": 60.0, "latency": 40.0}
    assert (config.pass_threshold, config.marginal_threshold) == (95.0, 75.0)


def test_cles_thresholds_default_to_one_half():
    raw = example()
    raw["metrics"][1]["analysisConfigurations"]["canary"]["effectSize"] = {
        "measure": "cles", "allowedIncrease": 0.7}
    effect = parse_canary_config(raw).metrics[1].effect_size
    assert effect == EffectSize("cles", 0.7, 0.5, 0.5, 0.5)


def test_outlier_removal_and_its_factor_are_read():
    raw = example()
    raw["metrics"][1]["analysisConfigurations"]["canary"]["outliers"] = {
        "strategy": "remove", "outlierFactor": 2}
    metric = parse_canary_config(raw).metrics[1]
    assert (metric.outlier_strategy, metric.outlier_factor) == ("remove", 2.0)


@pytest.mark.parametrize("where", ["top", "classifier"])
def test_score_thresholds_are_read_at_the_top_or_in_the_classifier(where: str):
    raw = example()
    holder = raw if where == "top" else raw["classifier"]
    holder["scoreThresholds"] = {"pass": 90, "marginal": 60}
    config = parse_canary_config(raw)
    assert (config.pass_threshold, config.marginal_threshold) == (90.0, 60.0)


def test_muted_is_read():
    raw = example()
    raw["metrics"][1]["analysisConfigurations"]["canary"]["muted"] = True
    config = parse_canary_config(raw)
    assert [m.muted for m in config.metrics] == [False, True, False]


def test_keys_outside_the_judges_objects_are_accepted_and_ignored():
    raw = example()
    raw.update({"id": "x", "description": "d", "configVersion": "1.0", "createdTimestamp": 1,
                "updatedTimestampIso": "2018-01-01T00:00:00Z", "templates": {"t": "${scope}"}})
    raw["judge"]["judgeConfigurations"] = {"anything": [1, 2]}
    raw["metrics"][1]["analysisConfigurations"]["otherJudge"] = {"knob": 3}
    raw["metrics"][1]["query"] = {"type": "atlas", "q": "name,errors,:eq"}
    assert parse_canary_config(raw) == parse_canary_config(example())


def test_the_execution_requests_thresholds_override_the_configs():
    raw = example()
    raw["classifier"]["scoreThresholds"] = {"pass": 90, "marginal": 60}
    thresholds = parse_execution_request({"scopes": {"default": {}},
                                          "thresholds": {"pass": 80.0, "marginal": 50}})
    assert thresholds == ScoreThresholds(80.0, 50.0)
    config = parse_canary_config(raw, thresholds=thresholds)
    assert (config.pass_threshold, config.marginal_threshold) == (80.0, 50.0)
    assert config.metrics == parse_canary_config(raw).metrics


def test_the_configs_own_thresholds_are_checked_even_when_overridden():
    raw = example()
    raw["scoreThresholds"] = {"pass": 120}
    with pytest.raises(InvalidCanaryConfig, match=r"^scoreThresholds\.pass: 120 is no score"):
        parse_canary_config(raw, thresholds=ScoreThresholds())


def test_an_adhoc_request_is_read_as_its_config_judged_with_its_own_thresholds():
    adhoc = {"canaryConfig": example(),
             "executionRequest": {"scopes": {}, "thresholds": {"pass": 70, "marginal": 40}}}
    config = parse_canary_config(adhoc)
    assert config.metrics == parse_canary_config(example()).metrics
    assert (config.pass_threshold, config.marginal_threshold) == (70.0, 40.0)
    assert parse_execution_request(adhoc) == ScoreThresholds(70.0, 40.0)
    overridden = parse_canary_config(adhoc, thresholds=ScoreThresholds(99, 98))
    assert (overridden.pass_threshold, overridden.marginal_threshold) == (99.0, 98.0)


def test_errors_in_an_adhoc_requests_config_name_the_path_inside_it():
    adhoc = {"canaryConfig": {**example(), "metrics": []}}
    with pytest.raises(InvalidCanaryConfig, match=r"^canaryConfig\.metrics: must be a "
                       "non-empty list"):
        parse_canary_config(adhoc)


@pytest.mark.parametrize(("request_json", "message"), [
    ([], "(top): must be a JSON object, not a list"),
    ({"scopes": {}}, "thresholds: missing; Kayenta's execution request gives the score "
                     "thresholds"),
    ({"thresholds": {"pass": 90}}, "thresholds.marginal: missing; Kayenta's execution "
                                   "request gives both pass and marginal"),
    ({"thresholds": {"pass": 90, "marginal": 95}}, "thresholds.marginal: 95 is above pass "
                                                   "90"),
    ({"thresholds": {"pass": "90", "marginal": 75}}, "thresholds.pass: '90' must be a "
                                                     "number"),
    ({"thresholds": {"pass": 90, "marginal": 75, "fail": 0}}, "thresholds.fail: unknown "
                                                             "setting"),
    ({"canaryConfig": {}, "executionRequest": {"thresholds": {"pass": 101, "marginal": 1}}},
     "executionRequest.thresholds.pass: 101 is no score"),
    ({"canaryConfig": {}}, "executionRequest: must be a JSON object, not null"),
])
def test_every_execution_request_error_names_the_path_of_the_bad_field(request_json: Any,
                                                                       message: str):
    with pytest.raises(InvalidCanaryConfig) as caught:
        parse_execution_request(request_json)
    assert str(caught.value).startswith(message)


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = raw
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


DELETE = object()
CANARY = "metrics.0.analysisConfigurations.canary"


@pytest.mark.parametrize(("path", "value", "message"), [
    ("metrics", [], "metrics: must be a non-empty list"),
    ("metrics.1", "p99", "metrics[1]: must be a JSON object, not a string"),
    ("metrics.0.name", DELETE, "metrics[0].name: missing; give the metric a name"),
    ("metrics.1.name", "5xx", "metrics[1].name: '5xx' is used twice"),
    ("metrics.2.groups", [], "metrics[2].groups: must be a non-empty list of group names"),
    ("metrics.2.groups", ["latency", "latency"], "metrics[2].groups: ['latency', 'latency'] "
                                                 "names a group twice"),
    ("metrics.1.analysisConfigurations", [], "metrics[1].analysisConfigurations: must be a "
                                             "JSON object, not a list"),
    (f"{CANARY}.direction", "up", "metrics[0].analysisConfigurations.canary.direction: 'up' "
                                  "is not one of increase, decrease, either"),
    (f"{CANARY}.nanStrategy", "zero", "metrics[0].analysisConfigurations.canary.nanStrategy: "
                                      "'zero' is not one of remove, replace"),
    (f"{CANARY}.critical", "yes", "metrics[0].analysisConfigurations.canary.critical: 'yes' "
                                  "must be true or false"),
    (f"{CANARY}.muted", 1, "metrics[0].analysisConfigurations.canary.muted: 1 must be true "
                           "or false"),
    (f"{CANARY}.mustHaveDate", True, "metrics[0].analysisConfigurations.canary.mustHaveDate: "
                                     "unknown setting; the settings here are direction, "
                                     "nanStrategy, critical, mustHaveData"),
    (f"{CANARY}.effectSize.allowedIncrease", "big",
     "metrics[0].analysisConfigurations.canary.effectSize.allowedIncrease: 'big' must be "
     "a number"),
    (f"{CANARY}.effectSize.allowedDecrease", 0,
     "metrics[0].analysisConfigurations.canary.effectSize.allowedDecrease: 0 must be above 0"),
    (f"{CANARY}.effectSize.measure", "cohen",
     "metrics[0].analysisConfigurations.canary.effectSize.measure: 'cohen' is not one of "
     "meanRatio, cles"),
    (f"{CANARY}.effectSize.measure", "cles",
     "metrics[0].analysisConfigurations.canary.effectSize.allowedIncrease: 1.1 is no "
     "probability"),
    (f"{CANARY}.outliers.strategy", "trim",
     "metrics[0].analysisConfigurations.canary.outliers.strategy: 'trim' is not one of keep, "
     "remove"),
    (f"{CANARY}.outliers.outlierFactor", -1,
     "metrics[0].analysisConfigurations.canary.outliers.outlierFactor: -1 must be above 0"),
    ("classifier.groupWeights.saturation", 10,
     "classifier.groupWeights.saturation: no metric is in group 'saturation', so its weight "
     "would count for nothing and Kayenta would cap the score at 100 minus it; remove it or "
     "weigh one of the groups: errors, latency"),
    ("classifier.groupWeights.errors", 70, "classifier.groupWeights: the weights add up to "
                                           "110; they must add up to 100 at most"),
    ("classifier.groupWeights.errors", 50, "classifier.groupWeights: every group has a "
                                           "weight, so they must add up to 100, not 90"),
    ("classifier.groupWeights.latency", -40, "classifier.groupWeights.latency: -40 must be "
                                             "0 or more"),
    ("classifier.groupWeights", [], "classifier.groupWeights: must be a JSON object"),
    ("scoreThresholds", {"pass": 120}, "scoreThresholds.pass: 120 is no score"),
    ("scoreThresholds", {"pass": 70, "marginal": 80}, "scoreThresholds.marginal: 80 is above "
                                                      "pass 70"),
    ("classifier.scoreThresholds", {"pas": 90}, "classifier.scoreThresholds.pas: unknown "
                                                "setting"),
    ("judge.name", "dredd-v1.0", "judge.name: 'dredd-v1.0' is not NetflixACAJudge-v1.0"),
])
def test_every_error_names_the_path_of_the_bad_field(path: str, value: Any, message: str):
    raw = example()
    _set(raw, path, value)
    with pytest.raises(InvalidCanaryConfig) as caught:
        parse_canary_config(raw)
    assert str(caught.value).startswith(message)


def test_weights_that_leave_nothing_for_the_unweighted_groups_are_refused():
    raw = example()
    raw["classifier"]["groupWeights"] = {"errors": 100}
    with pytest.raises(InvalidCanaryConfig, match=r"^classifier\.groupWeights: the weights "
                       r"add up to 100 already, leaving nothing for latency"):
        parse_canary_config(raw)


def test_thresholds_in_both_places_are_refused():
    raw = example()
    raw["scoreThresholds"] = raw["classifier"]["scoreThresholds"] = {"pass": 90}
    with pytest.raises(InvalidCanaryConfig, match=r"^scoreThresholds: given both"):
        parse_canary_config(raw)


def test_a_config_that_is_not_an_object_is_refused():
    with pytest.raises(InvalidCanaryConfig, match=r"^\(top\): must be a JSON object"):
        parse_canary_config([])  # type: ignore[arg-type]


RICH = CanaryConfig(
    (MetricConfig("errors", ("errors", "all"), "increase", "replace", critical=True,
                  effect_size=EffectSize.for_measure("meanRatio", allowed_increase=1.1,
                                                     critical_increase=5.0)),
     MetricConfig("p99", ("latency", "all"), "either", must_have_data=True,
                  effect_size=EffectSize.for_measure("cles", allowed_decrease=0.3),
                  outlier_strategy="remove", outlier_factor=2.5),
     MetricConfig("rps", ("traffic",), "decrease"),
     MetricConfig("cpu", ("traffic",), muted=True)),
    {"errors": 50.0, "latency": 30.0}, 90.0, 70.0)


def test_a_config_written_as_kayenta_json_reads_back_the_same():
    written = to_kayenta_json(RICH)
    assert parse_canary_config(json.loads(json.dumps(written))) == RICH
    assert written["judge"]["name"] == "NetflixACAJudge-v1.0"
    assert written["metrics"][0]["analysisConfigurations"]["canary"]["effectSize"] == {
        "measure": "meanRatio", "allowedIncrease": 1.1, "allowedDecrease": 1.0,
        "criticalIncrease": 5.0, "criticalDecrease": 1.0}


def test_kayentas_example_survives_a_round_trip():
    config = parse_canary_config(example())
    assert parse_canary_config(to_kayenta_json(config)) == config


def _descriptor(path: Path) -> AppDescriptor:
    return parse_descriptor(yaml.safe_load(path.read_text()), source=str(path))


@pytest.mark.parametrize("app_file", APP_FILES, ids=[p.parent.name for p in APP_FILES])
def test_every_app_descriptor_gives_a_canary_config_that_gates_its_metrics(app_file: Path):
    descriptor = _descriptor(app_file)
    config = canary_config_for(descriptor)
    assert [m.name for m in config.metrics] == [m.name for m in descriptor.canary_metrics]
    for wanted, metric in zip(descriptor.canary_metrics, config.metrics, strict=True):
        assert metric.direction == wanted.direction
        assert metric.critical == wanted.critical
        assert metric.groups == (wanted.group,)
        if wanted.kind == "error_rate":
            assert metric.nan_strategy == "replace" and not metric.must_have_data
        else:
            assert metric.nan_strategy == "remove"
            assert metric.must_have_data == (not wanted.critical)
    assert parse_canary_config(to_kayenta_json(config)) == config
    # Every app's descriptor names a critical error rate: doubling its errors fails the
    # canary outright, the same series on both sides pass.
    steady = {m.name: [0.01, 0.02, 0.01, 0.03, 0.02] * 4 for m in config.metrics}
    assert judge_canary(config, steady, steady).verdict == "pass"
    worse = {**steady, "error-rate": [2 * v for v in steady["error-rate"]]}
    assert judge_canary(config, steady, worse).score == 0.0


def test_the_thresholds_given_for_a_descriptor_are_kept():
    config = canary_config_for(_descriptor(APP_FILES[0]), pass_threshold=90,
                               marginal_threshold=50)
    assert (config.pass_threshold, config.marginal_threshold) == (90.0, 50.0)
    with pytest.raises(InvalidCanaryConfig, match=r"^scoreThresholds:"):
        canary_config_for(_descriptor(APP_FILES[0]), pass_threshold=50, marginal_threshold=90)


def test_a_descriptor_without_canary_metrics_has_no_canary_config():
    bare = AppDescriptor("bare", 8080, "/healthz", "/readyz", ())
    with pytest.raises(InvalidCanaryConfig, match=r"^bare: canary\.metrics: the descriptor "
                       "names no canary metric"):
        canary_config_for(bare)
