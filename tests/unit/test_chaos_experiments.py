"""Chaos Toolkit experiments as the gate writes, fills in and accepts them, as plain data:
the default experiment, the gate's configuration, what the gate refuses, the SLO rule, and
Chaos Toolkit's own validation of bad files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard.adapters.chaos_toolkit import parse_experiment, read_experiment
from shipyard.domain.catalog import AppDescriptor, InvalidDescriptor, Slo, parse_descriptor
from shipyard.domain.chaos import FAILURE_RATIO_CEILING, MIN_LOAD_SHARE, KillAction, Tolerance
from shipyard.domain.chaos_experiments import (
    ACTIVITIES,
    ACTIVITIES_MODULE,
    GateConfiguration,
    InvalidChaosExperiment,
    SloTolerance,
    default_experiment,
    refusals,
    request_timeout,
    slo_budget,
    title_of,
    with_configuration,
)
from stages.chaos import prepare_experiment

PROJECT = Path(__file__).resolve().parents[2]
APP_FILES = sorted((PROJECT / "apps").glob("*/app.yaml"))
DOCS_EXPERIMENT = PROJECT / "docs" / "chaos" / "latency-experiment.yaml"


def app(availability: float = 0.995, p99: float = 0.5,
        load_paths: tuple[str, ...] = ("/work",)) -> AppDescriptor:
    return AppDescriptor(name="web", port=8080, liveness_path="/healthz",
                         readiness_path="/readyz", depends_on=(),
                         slo=Slo(availability, p99), load_paths=load_paths)


def gate(descriptor: AppDescriptor | None = None, **changes: Any) -> GateConfiguration:
    fields: dict[str, Any] = {
        "kubeconfig": "/home/shipyard/kube/deploy-shipyard-staging.kubeconfig",
        "namespace": "shipyard-staging",
        "selector": "app.kubernetes.io/name=web,shipyard.dev/track=stable",
        "service_url": "http://10.96.0.7:80", "window_seconds": 10.0, "settle_seconds": 5.0,
        "rate_per_second": 20.0, "seed": 7, **changes}
    return GateConfiguration.for_app(descriptor or app(), **fields)


def probe_provider(experiment: dict[str, Any]) -> dict[str, Any]:
    return experiment["steady-state-hypothesis"]["probes"][0]["provider"]


def python(module: str = ACTIVITIES_MODULE, func: str = "http_steady_state") -> dict:
    return {"type": "python", "module": module, "func": func}


def experiment_with(**sections: Any) -> dict[str, Any]:
    """A minimal experiment the gate accepts, with ``sections`` replaced."""
    base = {"title": "t", "description": "d",
            "steady-state-hypothesis": {"title": "h", "probes": [
                {"type": "probe", "name": "p", "provider": python(), "tolerance": True}]},
            "method": [], "rollbacks": []}
    return {**base, **sections}


# -- the default experiment ----------------------------------------------------------------

@pytest.mark.parametrize("path", APP_FILES, ids=[p.parent.name for p in APP_FILES])
def test_every_app_gets_an_experiment_holding_it_to_its_slo(path):
    descriptor = parse_descriptor(yaml.safe_load(path.read_text()), source=str(path))
    experiment = default_experiment(descriptor, kill=KillAction(count=descriptor.chaos.kill))
    [probe] = experiment["steady-state-hypothesis"]["probes"]
    assert probe["provider"] == {
        **python(), "arguments": {
            "url": "${shipyard_service_url}", "paths": "${shipyard_paths}",
            "seconds": "${shipyard_window_seconds}",
            "rate_per_second": "${shipyard_rate_per_second}",
            "timeout_seconds": "${shipyard_timeout_seconds}"}}
    assert probe["tolerance"]["type"] == "probe"
    assert probe["tolerance"]["provider"] == {**python(func="within_slo"), "arguments": {
        "max_failure_ratio": pytest.approx(min(1 - descriptor.slo.availability,
                                               FAILURE_RATIO_CEILING)),
        "max_latency_p99_seconds": descriptor.slo.latency_p99_seconds,
        "min_requests": 1, "min_load_share": MIN_LOAD_SHARE}}
    [kill] = experiment["method"]
    assert kill["provider"] == {**python(func="kill_pods"), "arguments": {
        "namespace": "${shipyard_namespace}", "selector": "${shipyard_selector}",
        "count": descriptor.chaos.kill, "seed": "${shipyard_seed}"}}
    assert kill["pauses"] == {"after": "${shipyard_settle_seconds}"}
    assert experiment["rollbacks"] == []
    assert experiment["title"] == f"{descriptor.name} survives: kill 1 pod of " \
                                  "${shipyard_selector}"


@pytest.mark.parametrize(("availability", "budget"),
                         [(0.995, 0.005), (0.9, FAILURE_RATIO_CEILING), (1.0, 0.0)])
def test_the_failure_budget_is_the_slo_never_looser_than_one_in_a_hundred(availability,
                                                                          budget):
    assert slo_budget(Slo(availability, 0.5)) == pytest.approx(budget)


def test_the_default_experiment_can_kill_a_share_instead():
    experiment = default_experiment(app(), kill=KillAction(share=0.5))
    arguments = experiment["method"][0]["provider"]["arguments"]
    assert arguments["share"] == 0.5 and "count" not in arguments
    assert "kill 0.5 of the pods of ${shipyard_selector}" in experiment["title"]


def test_the_default_experiment_passes_chaos_toolkits_validation_once_configured():
    experiment = default_experiment(app(), kill=KillAction(count=1))
    prepared = prepare_experiment(experiment, gate().to_configuration(), source="generated")
    assert prepared["configuration"]["shipyard_namespace"] == "shipyard-staging"


# -- the gate's configuration --------------------------------------------------------------

def test_the_gate_configuration_comes_from_the_descriptor():
    keys = gate(app(p99=0.25, load_paths=("/a", "/b"))).to_configuration()
    assert keys == {
        "shipyard_kubeconfig": "/home/shipyard/kube/deploy-shipyard-staging.kubeconfig",
        "shipyard_namespace": "shipyard-staging", "shipyard_app": "web",
        "shipyard_selector": "app.kubernetes.io/name=web,shipyard.dev/track=stable",
        "shipyard_service_url": "http://10.96.0.7:80", "shipyard_paths": ["/a", "/b"],
        "shipyard_window_seconds": 10.0, "shipyard_settle_seconds": 5.0,
        "shipyard_rate_per_second": 20.0, "shipyard_timeout_seconds": 1.0,
        "shipyard_seed": 7, "shipyard_max_failure_ratio": 0.005,
        "shipyard_max_latency_p99_seconds": 0.25, "shipyard_min_load_share": MIN_LOAD_SHARE}


def test_an_app_without_load_paths_is_probed_on_version():
    assert gate(app(load_paths=())).paths == ("/version",)


def test_paths_the_caller_names_win_over_the_descriptors():
    assert gate(paths=("/only",)).paths == ("/only",)


@pytest.mark.parametrize(("p99", "timeout"), [(0.1, 1.0), (0.75, 1.5), (30.0, 10.0)])
def test_a_request_times_out_at_twice_the_slo_p99_between_1_and_10_seconds(p99, timeout):
    assert request_timeout(Slo(0.99, p99)) == timeout


@pytest.mark.parametrize(("changes", "message"), [
    ({"window_seconds": 0}, "window_seconds"), ({"window_seconds": 301}, "window_seconds"),
    ({"settle_seconds": -1}, "settle_seconds"), ({"settle_seconds": 61}, "settle_seconds"),
    ({"rate_per_second": 0}, "rate_per_second"), ({"rate_per_second": 500}, "rate_per_second"),
    ({"paths": ("work",)}, "paths")])
def test_the_gate_refuses_windows_rates_and_paths_out_of_bounds(changes, message):
    with pytest.raises(ValueError, match=message):
        gate(**changes)


def test_the_gates_keys_win_over_the_files_and_the_files_others_stay():
    experiment = experiment_with(configuration={"shipyard_namespace": "elsewhere",
                                                "added_latency_ms": 100})
    filled = with_configuration(experiment, {"shipyard_namespace": "shipyard-staging"})
    assert filled["configuration"] == {"shipyard_namespace": "shipyard-staging",
                                       "added_latency_ms": 100}
    assert experiment["configuration"]["shipyard_namespace"] == "elsewhere"  # a copy


def test_the_title_shows_the_configuration_it_names():
    experiment = experiment_with(title="${shipyard_app} keeps its SLO with ${ms} ms ${gone}",
                                 configuration={"shipyard_app": "web", "ms": 100})
    assert title_of(experiment) == "web keeps its SLO with 100 ms ${gone}"


def test_a_configuration_that_is_no_mapping_is_refused():
    with pytest.raises(InvalidChaosExperiment, match="configuration"):
        with_configuration(experiment_with(configuration=["a"]), {})


# -- what the gate refuses to run ----------------------------------------------------------

def test_an_experiment_of_shipyards_activities_is_accepted():
    assert refusals(experiment_with()) == []


def test_only_shipyards_activities_of_its_module_may_be_called_not_what_it_imports():
    import stages.chaos_activities

    assert set(stages.chaos_activities.__all__) == ACTIVITIES
    method = [{"type": "action", "name": "a", "provider": python(func="open_identity")}]
    [problem] = refusals(experiment_with(method=method))
    assert problem.startswith("method[0] (a): 'open_identity' is not one of Shipyard's")


def test_an_experiment_without_a_hypothesis_proves_nothing_and_is_refused():
    [problem] = refusals(experiment_with(**{"steady-state-hypothesis": {"title": "h"}}))
    assert problem.startswith("steady-state-hypothesis: the gate needs one")


def test_an_activity_of_another_module_is_refused_naming_where_it_is():
    method = [{"type": "action", "name": "shell", "provider": python("os", "system")}]
    assert refusals(experiment_with(method=method)) == [
        "method[0] (shell): module 'os' is not an allowed activity module "
        "(stages.chaos_activities)"]


def test_an_allowed_extension_may_be_called_down_to_its_submodules():
    method = [{"type": "action", "name": "drain", "provider": python("chaosk8s.node.actions",
                                                                      "drain_nodes")}]
    assert refusals(experiment_with(method=method), allowed=["chaosk8s"]) == []
    assert refusals(experiment_with(method=method), allowed=["chaosk8s.pod"]) != []


@pytest.mark.parametrize("kind", ["process", "http"])
def test_commands_and_requests_from_the_worker_are_refused_unless_allowed(kind):
    rollbacks = [{"type": "action", "name": "x", "provider": {"type": kind, "path": "rm"}}]
    [problem] = refusals(experiment_with(rollbacks=rollbacks))
    assert problem == (f"rollbacks[0] (x): a {kind} provider runs on the worker's host; "
                       "the gate runs Python activities only")
    assert refusals(experiment_with(rollbacks=rollbacks), allowed=[kind]) == []


def test_tolerances_controls_and_dynamic_configuration_are_held_to_the_same_modules():
    probe = {"type": "probe", "name": "p", "provider": python(),
             "tolerance": {"type": "probe", "name": "t", "provider": python("evil", "f")},
             "controls": [{"name": "c", "provider": python("evil.c", "f")}]}
    experiment = experiment_with(
        **{"steady-state-hypothesis": {"title": "h", "probes": [probe]}},
        controls=[{"name": "top", "provider": python("evil.top", "f")}],
        configuration={"dyn": {"type": "probe", "name": "d", "provider": python("evil.d")}})
    assert [p.split(":")[0] for p in refusals(experiment)] == [
        "steady-state-hypothesis.probes[0] (p).tolerance",
        "steady-state-hypothesis.probes[0] (p).controls[0]",
        "controls[0] (top)", "configuration.dyn"]


def test_the_workers_environment_is_not_the_experiments_to_read():
    experiment = experiment_with(
        configuration={"token": {"type": "env", "key": "PREFECT_API_AUTH_STRING"}},
        secrets={"k8s": {"password": {"type": "env", "key": "PGPASSWORD"},
                         "inline": "kept"}})
    assert [p.split(":")[0] for p in refusals(experiment)] == [
        "configuration.token", "secrets.k8s.password"]
    assert refusals(experiment, environment=True) == []


@pytest.mark.parametrize(("pause", "refused"), [(30, False), (61, True), ("${settle}", False),
                                                 ("${long}", True), ("${missing}", True)])
def test_a_pause_is_at_most_a_minute_placeholders_resolved(pause, refused):
    method = [{"type": "action", "name": "a", "provider": python(func="kill_pods"),
               "pauses": {"after": pause}}]
    experiment = experiment_with(method=method, configuration={"settle": 5, "long": 600})
    assert bool(refusals(experiment)) is refused


# -- the SLO rule --------------------------------------------------------------------------

def measured(**changes: Any) -> dict[str, Any]:
    return {"requests": 200, "failures": 0, "answered": 200, "failure_ratio": 0.0,
            "latency_p99": 0.1, "expected_requests": 200.0, **changes}


SLO = SloTolerance(max_failure_ratio=0.005, max_latency_p99_seconds=0.5, min_requests=1,
                   min_load_share=0.25)


def test_a_window_within_the_slo_keeps_every_rule():
    rules = SLO.judge(measured())
    assert [(r.name, r.value, r.tolerance, r.met) for r in rules] == [
        ("requests", 200.0, Tolerance.at_least(50), True),
        ("failure-ratio", 0.0, Tolerance.at_most(0.005), True),
        ("latency-p99", 0.1, Tolerance.at_most(0.5), True)]
    assert SLO.accepts(measured())


@pytest.mark.parametrize("changes", [{"failure_ratio": 0.01}, {"latency_p99": 0.6},
                                     {"requests": 49}, {"failure_ratio": None},
                                     {"latency_p99": "fast"}])
def test_a_window_breaking_a_rule_or_missing_a_value_is_out_of_the_slo(changes):
    assert not SLO.accepts(measured(**changes))


def test_a_window_where_nothing_answered_fails_its_latency_even_within_bounds():
    rules = SLO.judge(measured(answered=0, failure_ratio=1.0, latency_p99=0.2))
    latency = rules[2]
    assert not latency.met and latency.note == "nothing answered: the timeout"


def test_no_measurement_is_never_within_the_slo():
    assert not SLO.accepts(None)


def test_the_rule_reads_its_arguments_as_an_experiment_writes_them():
    rule = SloTolerance.from_arguments({"max_failure_ratio": "0.01", "value": {},
                                        "max_latency_p99_seconds": 1, "min_requests": 3})
    assert rule == SloTolerance(0.01, 1.0, 3, 0.0)
    assert SloTolerance.from_arguments(rule.to_arguments()) == rule


@pytest.mark.parametrize("arguments", [{}, {"max_failure_ratio": 2,
                                            "max_latency_p99_seconds": 1},
                                       {"max_failure_ratio": 0, "max_latency_p99_seconds": 0}])
def test_a_rule_out_of_range_or_incomplete_is_refused(arguments):
    with pytest.raises(ValueError, match="within_slo"):
        SloTolerance.from_arguments(arguments)


# -- Chaos Toolkit's validation of experiment files ----------------------------------------

def test_a_file_that_is_not_json_names_the_file_and_the_problem(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"title": "x",')
    with pytest.raises(InvalidChaosExperiment, match=rf"^{path}: not valid JSON: "):
        read_experiment(path)


def test_a_file_that_is_not_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("title: [x\n")
    with pytest.raises(InvalidChaosExperiment, match=rf"^{path}: not valid YAML: "):
        read_experiment(path)


def test_an_experiment_is_a_mapping():
    with pytest.raises(InvalidChaosExperiment, match=r"x\.yaml: an experiment is a mapping"):
        parse_experiment("- a\n- b\n", source="x.yaml")


def test_a_missing_file_names_it(tmp_path):
    with pytest.raises(InvalidChaosExperiment, match="cannot be read"):
        read_experiment(tmp_path / "nowhere.yaml")


def configured(experiment: dict[str, Any]) -> dict[str, Any]:
    return prepare_experiment(experiment, gate().to_configuration(), source="exp.yaml")


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e.pop("description"), "exp.yaml: experiment requires a description"),
    (lambda e: e.pop("method"), "exp.yaml: an experiment requires a method"),
    (lambda e: e["steady-state-hypothesis"]["probes"][0].pop("tolerance"),
     "exp.yaml: steady-state-hypothesis.probes[0] (p): hypothesis probe must have a "
     "tolerance entry"),
    (lambda e: e["steady-state-hypothesis"]["probes"][0].update(
        tolerance={"type": "weird"}),
     "exp.yaml: steady-state-hypothesis.probes[0] (p): hypothesis probe tolerance type "
     "'weird' is unsupported"),
    (lambda e: e["steady-state-hypothesis"]["probes"][0]["provider"].update(
        arguments={"url": "http://x", "colour": "red"}),
     "exp.yaml: steady-state-hypothesis.probes[0] (p): argument 'colour' is not part of "
     "the function signature"),
    (lambda e: e["steady-state-hypothesis"]["probes"][0].update(
        tolerance={"type": "range", "range": [0]}),
     "exp.yaml: steady-state-hypothesis.probes[0] (p): hypothesis range sequence must be "
     "made of two values"),
    (lambda e: e["rollbacks"].append({"type": "action", "name": "a", "provider": python(
        func="clear_faults"), "timeout": "soon"}),
     "exp.yaml: rollbacks[0] (a): activity timeout must be a number"),
    (lambda e: e["method"].append({"type": "action", "name": "a", "provider": python(
        func="kill_pods")}),
     "exp.yaml: method[0] (a): required argument 'namespace' is missing"),
    (lambda e: e["method"].append(1), "exp.yaml: method[0]: "),
])
def test_chaos_toolkit_refuses_a_malformed_experiment_naming_the_file(change, message):
    experiment = copy.deepcopy(experiment_with())
    experiment["steady-state-hypothesis"]["probes"][0]["provider"]["arguments"] = {
        "url": "http://10.96.0.7"}
    change(experiment)
    with pytest.raises(InvalidChaosExperiment) as refused:
        configured(experiment)
    assert str(refused.value).startswith(message)


def test_the_gates_refusals_come_before_chaos_toolkit_imports_anything():
    method = [{"type": "action", "name": "boom", "provider": python("no.such.module")}]
    with pytest.raises(InvalidChaosExperiment, match=r"exp\.yaml: method\[0\] \(boom\): "
                       "module 'no.such.module' is not an allowed"):
        configured(experiment_with(method=method))


def test_the_docs_experiment_is_valid_once_the_gate_fills_it_in():
    experiment = read_experiment(DOCS_EXPERIMENT)
    assert refusals(experiment)  # it reads the environment for Chaos Toolkit's own CLI...
    prepared = configured(experiment)  # ...which the gate's keys replace
    assert prepared["configuration"]["added_latency_ms"] == 100
    assert [a["name"] for a in prepared["method"]] == ["inject-latency"]
    assert [a["name"] for a in prepared["rollbacks"]] == ["clear-faults"]


# -- the descriptor names the experiment ---------------------------------------------------

def descriptor_with(chaos: dict[str, Any]) -> AppDescriptor:
    return parse_descriptor({"name": "web", "port": 8080,
                             "health": {"liveness": "/healthz", "readiness": "/readyz"},
                             "chaos": chaos}, source="apps/web/app.yaml")


def test_an_app_may_name_its_experiment_file():
    settings = descriptor_with({"enabled": True, "experiment": "chaos/latency.yaml"}).chaos
    assert settings.experiment == "chaos/latency.yaml"
    assert descriptor_with({"enabled": True}).chaos.experiment is None


@pytest.mark.parametrize("path", ["../other/x.yaml", "/etc/x.yaml", "chaos/x.txt", "",
                                  "a//b.json", "./x.yml", 3, "a\\b.yaml"])
def test_an_experiment_path_outside_the_app_folder_or_of_another_kind_is_refused(path):
    with pytest.raises(InvalidDescriptor, match=r"apps/web/app\.yaml: chaos\.experiment: must"):
        descriptor_with({"enabled": True, "experiment": path})
