"""The chaos gate's experiment as plain data: tolerances, victims, hypotheses, verdicts and
the report."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import yaml

from shipyard.domain.catalog import AppDescriptor, Slo, parse_descriptor
from shipyard.domain.chaos import (
    FAILURE_RATIO_CEILING,
    ChaosReport,
    Experiment,
    Hypothesis,
    HypothesisResult,
    Kill,
    KillAction,
    Probe,
    Tolerance,
    Transition,
    Window,
    choose_victims,
    evaluate_hypothesis,
    experiment_for,
    measure_of,
    verdict,
)
from shipyard.domain.traffic import Sample, TrafficSummary, summarize

PROJECT = Path(__file__).resolve().parents[2]
APP_FILES = sorted((PROJECT / "apps").glob("*/app.yaml"))
PODS = ["web-7d9-a", "web-7d9-b", "web-7d9-c"]


def traffic(ok: int, failed: int = 0, latency: float = 0.01) -> TrafficSummary:
    """A window of ``ok`` answered requests and ``failed`` refused ones."""
    samples = [Sample(i * 0.05, latency, 200, "v1") for i in range(ok)]
    samples += [Sample(i * 0.05, 0.001, 0) for i in range(failed)]
    return summarize(samples)


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 -- a repeatable draw, not a secret


def app(availability: float = 0.995, p99: float = 0.5) -> AppDescriptor:
    return AppDescriptor(name="web", port=8080, liveness_path="/healthz",
                         readiness_path="/readyz", depends_on=(),
                         slo=Slo(availability, p99))


HYPOTHESIS = Hypothesis("web serves", (
    Probe("requests", "requests", Tolerance.at_least(20)),
    Probe("failure-ratio", "failure_ratio", Tolerance.at_most(0.005)),
    Probe("latency-p99", "latency_p99", Tolerance.at_most(0.5)),
))


# -- tolerances ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("tolerance", "value", "accepted"),
    [
        (Tolerance.between(0.9, 1.0), 0.9, True),
        (Tolerance.between(0.9, 1.0), 1.0, True),
        (Tolerance.between(0.9, 1.0), 0.899, False),
        (Tolerance.between(0.9, 1.0), 1.01, False),
        (Tolerance.at_most(0.005), 0.005, True),
        (Tolerance.at_most(0.005), 0.0051, False),
        (Tolerance.at_most(0.0), 0.0, True),
        (Tolerance.at_least(20), 20, True),
        (Tolerance.at_least(20), 19, False),
        (Tolerance.exactly(True), True, True),
        (Tolerance.exactly(True), False, False),
        (Tolerance.exactly(False), 0, False),
    ],
)
def test_a_tolerance_accepts_exactly_the_values_within_it(tolerance, value, accepted):
    assert tolerance.accepts(value) is accepted


@pytest.mark.parametrize("missing", [None, math.nan])
def test_a_missing_value_is_never_within_tolerance(missing):
    assert not Tolerance.at_most(1.0).accepts(missing)
    assert not Tolerance.between(0, 1).accepts(missing)


def test_a_boolean_is_not_a_number_to_a_numeric_tolerance():
    assert not Tolerance.at_most(1.0).accepts(True)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Tolerance.between(1.0, 0.5),
        lambda: Tolerance("max"),
        lambda: Tolerance("max", hi=1.0, lo=0.0),
        lambda: Tolerance("exact", hi=1.0),
        lambda: Tolerance.at_most(math.inf),
        lambda: Tolerance("regex", hi=1.0),  # type: ignore[arg-type]
    ],
)
def test_a_malformed_tolerance_is_refused(build):
    with pytest.raises(ValueError, match="tolerance"):
        build()


def test_tolerances_describe_themselves_and_serialize_like_chaos_toolkit():
    assert Tolerance.between(0.9, 1).describe() == "in [0.9, 1]"
    assert Tolerance.at_most(0.005).describe() == "≤ 0.005"
    assert Tolerance.at_least(20).describe() == "≥ 20"
    assert Tolerance.exactly(True).describe() == "is true"
    assert Tolerance.between(0.9, 1).to_json() == {"type": "range", "range": [0.9, 1.0]}
    assert Tolerance.at_most(0.5).to_json() == {"type": "max", "max": 0.5}
    assert Tolerance.at_least(3).to_json() == {"type": "min", "min": 3.0}
    assert Tolerance.exactly(False).to_json() == {"type": "exact", "value": False}


# -- the method: kill actions and their victims --------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of share and count"),
        ({"share": 0.5, "count": 1}, "exactly one of share and count"),
        ({"share": 0.0}, "share"),
        ({"share": 1.5}, "share"),
        ({"count": 0}, "count"),
        ({"count": True}, "count"),
    ],
)
def test_a_kill_action_takes_one_valid_amount(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KillAction(**kwargs)


@pytest.mark.parametrize(
    ("action", "pods", "killed"),
    [
        (KillAction(count=1), PODS, 1),
        (KillAction(count=2), PODS, 2),
        (KillAction(count=5), PODS, 3),
        (KillAction(share=1.0), PODS, 3),
        (KillAction(share=0.5), PODS, 1),
        (KillAction(share=2 / 3), PODS, 2),
        (KillAction(share=0.01), PODS, 1),
        (KillAction(count=1), PODS[:1], 1),
        (KillAction(share=0.5), PODS[:1], 1),
    ],
)
def test_victims_are_at_least_one_and_never_more_than_exist(action, pods, killed):
    victims = choose_victims(pods, action, seeded(7))
    assert len(victims) == killed
    assert len(set(victims)) == killed and set(victims) <= set(pods)


def test_no_pods_means_no_victims():
    assert choose_victims([], KillAction(count=1), seeded(7)) == []


def test_a_seed_chooses_the_same_victims_whatever_order_the_pods_are_listed_in():
    action = KillAction(share=2 / 3)
    first = choose_victims(PODS, action, seeded(42))
    again = choose_victims(list(reversed(PODS)), action, seeded(42))
    assert first == again


def test_every_pod_can_be_the_victim():
    chosen = {choose_victims(PODS, KillAction(count=1), seeded(seed))[0]
              for seed in range(50)}
    assert chosen == set(PODS)


# -- the steady-state hypothesis -----------------------------------------------------------

def test_a_hypothesis_holds_when_every_probe_is_within_tolerance():
    result = evaluate_hypothesis(HYPOTHESIS, traffic(ok=100))
    assert result.met
    assert [(p.name, p.value, p.met) for p in result.probes] == [
        ("requests", 100.0, True), ("failure-ratio", 0.0, True), ("latency-p99", 0.01, True)]


def test_a_hypothesis_fails_naming_the_probe_out_of_tolerance():
    result = evaluate_hypothesis(HYPOTHESIS, traffic(ok=90, failed=10))
    assert not result.met
    assert [p.name for p in result.unmet] == ["failure-ratio"]
    assert result.describe() == "failure-ratio 0.1, expected ≤ 0.005"


def test_slow_answers_fail_the_latency_probe():
    result = evaluate_hypothesis(HYPOTHESIS, traffic(ok=100, latency=0.8))
    assert [p.name for p in result.unmet] == ["latency-p99"]


def test_a_window_without_traffic_fails_every_probe_instead_of_passing_by_silence():
    result = evaluate_hypothesis(HYPOTHESIS, traffic(ok=0))
    assert not result.met
    assert [(p.name, p.value) for p in result.unmet] == [
        ("requests", 0.0), ("failure-ratio", None), ("latency-p99", None)]


def test_a_window_where_every_request_failed_has_no_latency_to_judge():
    result = evaluate_hypothesis(HYPOTHESIS, traffic(ok=0, failed=40))
    assert {p.name: p.value for p in result.probes} == {
        "requests": 40.0, "failure-ratio": 1.0, "latency-p99": None}


def test_availability_is_the_share_of_requests_that_did_not_fail():
    window = traffic(ok=99, failed=1)
    assert measure_of(window, "availability") == pytest.approx(0.99)
    assert measure_of(window, "latency_p95") == 0.01


# -- verdicts ------------------------------------------------------------------------------

HELD = evaluate_hypothesis(HYPOTHESIS, traffic(ok=100))
BROKEN = evaluate_hypothesis(HYPOTHESIS, traffic(ok=50, failed=50))


def test_a_steady_state_that_holds_before_and_after_passes():
    assert verdict(HELD, HELD) == "passed"


def test_a_steady_state_lost_after_the_method_deviates():
    assert verdict(HELD, BROKEN) == "deviated"


def test_no_steady_state_before_the_method_aborts_whatever_came_after():
    assert verdict(BROKEN, None) == "aborted"
    assert verdict(BROKEN, HELD) == "aborted"


def test_a_held_steady_state_needs_a_judgment_after_the_method():
    with pytest.raises(ValueError, match="after"):
        verdict(HELD, None)


# -- the default experiment from each app's SLO --------------------------------------------

@pytest.mark.parametrize("path", APP_FILES, ids=[p.parent.name for p in APP_FILES])
def test_every_app_gets_an_experiment_holding_it_to_its_slo(path):
    descriptor = parse_descriptor(yaml.safe_load(path.read_text()), source=str(path))
    experiment = experiment_for(descriptor, target="app.kubernetes.io/name=x",
                                rate_per_second=20, window_seconds=10)
    probes = {p.name: p for p in experiment.hypothesis.probes}
    budget = probes["failure-ratio"].tolerance
    assert budget.kind == "max" and budget.hi == pytest.approx(
        min(1 - descriptor.slo.availability, FAILURE_RATIO_CEILING))
    assert probes["latency-p99"].tolerance == Tolerance.at_most(
        descriptor.slo.latency_p99_seconds)
    assert probes["requests"].tolerance == Tolerance.at_least(50)
    assert experiment.method == (KillAction(count=1, target="app.kubernetes.io/name=x"),)
    assert descriptor.name in experiment.title


def test_an_slo_budget_of_half_a_percent_is_the_failure_tolerance():
    experiment = experiment_for(app(availability=0.995), target="t", rate_per_second=20)
    assert experiment.hypothesis.probes[1].tolerance == Tolerance.at_most(0.005)


def test_a_lax_slo_is_held_to_the_ceiling_of_one_failure_in_a_hundred():
    experiment = experiment_for(app(availability=0.9), target="t", rate_per_second=20)
    assert experiment.hypothesis.probes[1].tolerance == Tolerance.at_most(0.01)


def test_a_perfect_slo_tolerates_no_failure():
    experiment = experiment_for(app(availability=1.0), target="t", rate_per_second=20)
    assert experiment.hypothesis.probes[1].tolerance == Tolerance.at_most(0.0)


def test_the_default_experiment_can_kill_a_share_instead():
    experiment = experiment_for(app(), target="t", rate_per_second=20,
                                kill=KillAction(share=0.5, target="t"))
    assert experiment.method == (KillAction(share=0.5, target="t"),)
    assert "kill 0.5 of the pods of t" in experiment.title


@pytest.mark.parametrize(
    "kwargs",
    [{"rate_per_second": 0}, {"rate_per_second": 20, "window_seconds": 0},
     {"rate_per_second": 20, "settle_seconds": -1}],
)
def test_an_experiment_needs_load_and_time_to_watch(kwargs):
    with pytest.raises(ValueError, match="must"):
        experiment_for(app(), target="t", **kwargs)


def test_an_experiment_without_chaos_is_refused():
    with pytest.raises(ValueError, match="action"):
        Experiment("nothing", HYPOTHESIS, (), 1.0, 5.0)


# -- the report ----------------------------------------------------------------------------

def report(after: HypothesisResult | None, kills: tuple[Kill, ...] = (
        Kill("web-7d9-b", 5.2),)) -> ChaosReport:
    return ChaosReport(
        experiment="web survives: kill 1 pod", target="app.kubernetes.io/name=web",
        candidates=tuple(PODS), before_window=Window(0.0, 5.0),
        before=HELD if after is not None else BROKEN, kills=kills if after else (),
        after_window=Window(7.2, 12.2) if after else None, after=after,
        transition=Transition(Window(5.2, 7.2), 40, 2) if after else None)


def test_a_report_is_json_with_every_probe_its_kills_and_its_verdict():
    data = json.loads(json.dumps(report(after=BROKEN).to_json()))
    assert data["verdict"] == "deviated"
    assert data["kills"] == [{"pod": "web-7d9-b", "at_seconds": 5.2}]
    assert data["before"]["window"] == {"start": 0.0, "end": 5.0}
    assert data["after"]["window"] == {"start": 7.2, "end": 12.2}
    assert data["transition"] == {"window": {"start": 5.2, "end": 7.2}, "requests": 40,
                                  "failures": 2}
    failure = next(p for p in data["after"]["probes"] if p["name"] == "failure-ratio")
    assert failure == {"name": "failure-ratio", "measure": "failure_ratio", "value": 0.5,
                       "tolerance": {"type": "max", "max": 0.005}, "met": False}
    assert [p["met"] for p in data["before"]["probes"]] == [True, True, True]


def test_a_deviated_report_says_which_probe_left_its_tolerance():
    assert report(after=BROKEN).summary() == (
        "deviated: killed 1 of 3 pods (web-7d9-b); then failure-ratio 0.5, "
        "expected ≤ 0.005")


def test_a_passed_report_shows_the_steady_state_after_the_kill():
    summary = report(after=HELD).summary()
    assert summary.startswith("passed: killed 1 of 3 pods (web-7d9-b); then requests 100")
    assert "failure-ratio 0, expected ≤ 0.005" in summary


def test_an_aborted_report_killed_nothing_and_says_why():
    aborted = report(after=None)
    data = aborted.to_json()
    assert data["verdict"] == "aborted" and data["kills"] == [] and data["after"] is None
    assert data["transition"] is None
    assert aborted.summary().startswith("aborted: the steady state did not hold before")
    assert "failure-ratio 0.5, expected ≤ 0.005" in aborted.summary()
