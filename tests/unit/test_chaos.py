"""The chaos gate's report as plain data: tolerances, victims, verdicts and the report."""

from __future__ import annotations

import json
import math
import random

import pytest

from shipyard.domain.chaos import (
    ActivityRun,
    ChaosReport,
    HypothesisResult,
    Kill,
    KillAction,
    ProbeResult,
    Tolerance,
    Transition,
    Window,
    choose_victims,
    verdict,
)

PODS = ["web-7d9-a", "web-7d9-b", "web-7d9-c"]


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 -- a repeatable draw, not a secret


def hypothesis(ratio: float, p99: float = 0.01, requests: float = 100) -> HypothesisResult:
    """The steady state of a window with ``requests``, a failure ``ratio`` and a ``p99``,
    held to at least 20 requests, at most 0.5% failed and a p99 of 0.5 s."""
    rules = [ProbeResult("requests", "requests", requests, Tolerance.at_least(20),
                         Tolerance.at_least(20).accepts(requests)),
             ProbeResult("failure-ratio", "failure_ratio", ratio, Tolerance.at_most(0.005),
                         Tolerance.at_most(0.005).accepts(ratio)),
             ProbeResult("latency-p99", "latency_p99", p99, Tolerance.at_most(0.5),
                         Tolerance.at_most(0.5).accepts(p99))]
    return HypothesisResult("web serves", all(r.met for r in rules), tuple(rules))


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


def test_a_tolerance_only_chaos_toolkit_judges_is_shown_as_written_and_accepts_nothing():
    written = Tolerance.written('{"type": "regex", "pattern": "ok"}')
    assert written.describe() == '{"type": "regex", "pattern": "ok"}'
    assert written.to_json() == {"type": "text", "text": '{"type": "regex", "pattern": "ok"}'}
    assert not written.accepts(1.0)


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

def test_a_hypothesis_describes_only_the_probes_out_of_tolerance():
    broken = hypothesis(ratio=0.1)
    assert [p.name for p in broken.unmet] == ["failure-ratio"]
    assert broken.describe() == "failure-ratio 0.1, expected ≤ 0.005"


def test_a_held_hypothesis_describes_every_probe():
    assert hypothesis(ratio=0.0).describe() == (
        "requests 100, expected ≥ 20; failure-ratio 0, expected ≤ 0.005; "
        "latency-p99 0.01, expected ≤ 0.5")


def test_a_probe_without_a_number_says_what_it_was():
    probe = ProbeResult("slo", "value", None, Tolerance.written("true"), False,
                        "failed: LookupError: no pods")
    assert probe.describe() == "slo failed: LookupError: no pods, expected true"
    assert probe.to_json()["note"] == "failed: LookupError: no pods"


# -- verdicts ------------------------------------------------------------------------------

HELD = hypothesis(ratio=0.0)
BROKEN = hypothesis(ratio=0.5)


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


# -- the report of a Chaos Toolkit run: actions, rollbacks, reasons -------------------------

def ran(name: str, *, succeeded: bool = True, error: str = "",
        output: object = None) -> ActivityRun:
    return ActivityRun(name, "action", succeeded, Window(5.0, 6.5), output, error)


def run_report(after: HypothesisResult | None = HELD, before: HypothesisResult = HELD,
               method: tuple[ActivityRun, ...] = (ran("inject-latency"),),
               rollbacks: tuple[ActivityRun, ...] = (ran("clear-faults"),),
               stopped: str = "") -> ChaosReport:
    return ChaosReport(experiment="web keeps its SLO with 100 ms more", target="",
                       candidates=(), before_window=Window(0, 5), before=before,
                       after_window=Window(7, 12) if after else None, after=after,
                       method=method, rollbacks=rollbacks, stopped=stopped,
                       source="apps/web/chaos/latency.yaml", journal={"status": "completed"})


def test_a_method_without_kills_is_reported_by_the_actions_it_ran():
    report = run_report(after=BROKEN)
    assert report.reason == "ChaosDeviated" and report.verdict == "deviated"
    assert report.summary() == ("deviated: ran inject-latency; then failure-ratio 0.5, "
                                "expected ≤ 0.005")


def test_an_action_that_failed_aborts_whatever_the_hypothesis_said_after_it():
    report = run_report(method=(ran("kill-pods", succeeded=False,
                                    error="LookupError: no running pod"),))
    assert report.reason == "ChaosMethodFailed" and report.verdict == "aborted"
    assert report.summary() == ("aborted: action kill-pods failed: LookupError: no running "
                                "pod")


def test_a_failed_rollback_fails_a_passed_experiment_and_is_named():
    report = run_report(rollbacks=(ran("clear-faults", succeeded=False,
                                       error="KubeError: 403 forbidden"),))
    assert report.verdict == "passed" and report.reason == "ChaosRollbackFailed"
    assert report.summary().endswith("; rollback action clear-faults failed: "
                                     "KubeError: 403 forbidden")


def test_a_run_chaos_toolkit_broke_off_is_aborted_with_its_reason():
    report = run_report(after=None, stopped="Chaos Toolkit reports the run interrupted")
    assert report.reason == "ChaosInterrupted" and report.verdict == "aborted"
    assert report.summary() == "aborted: Chaos Toolkit reports the run interrupted"


def test_a_steady_state_unmet_before_aborts_even_if_the_rollbacks_ran():
    report = run_report(before=BROKEN, after=None, method=())
    assert report.reason == "SteadyStateNotMet" and report.verdict == "aborted"
    assert report.summary().startswith("aborted: the steady state did not hold before the "
                                       "method, nothing was done: failure-ratio 0.5")


def test_a_passed_experiment_has_no_reason_to_fail():
    report = run_report()
    assert report.reason == "" and report.verdict == "passed"
    assert report.summary().startswith("passed: ran inject-latency; then requests 100")


def test_the_report_json_carries_the_actions_rollbacks_source_and_journal():
    data = json.loads(json.dumps(run_report(after=BROKEN).to_json()))
    assert data["reason"] == "ChaosDeviated"
    assert data["method"] == [{"name": "inject-latency", "kind": "action",
                               "status": "succeeded", "window": {"start": 5.0, "end": 6.5},
                               "output": None, "error": ""}]
    assert [r["name"] for r in data["rollbacks"]] == ["clear-faults"]
    assert data["source"] == "apps/web/chaos/latency.yaml"
    assert data["journal"] == {"status": "completed"}


def test_kills_with_other_actions_name_the_whole_method():
    report = ChaosReport(experiment="x", target="t", candidates=tuple(PODS),
                         before_window=Window(0, 5), before=HELD,
                         kills=(Kill("web-7d9-a", 5.1),), after_window=Window(7, 12),
                         after=HELD, method=(ran("inject-latency"), ran("kill-pods")))
    assert report.summary().startswith(
        "passed: killed 1 of 3 pods (web-7d9-a) (method: inject-latency, kill-pods); then")
