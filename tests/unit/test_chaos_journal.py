"""What a Chaos Toolkit journal says happened, read as the gate's report: plain journals in
the shape ``chaoslib.run`` writes them."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import pytest

from shipyard.domain.chaos import Kill, Tolerance, Window
from shipyard.domain.chaos_experiments import ACTIVITIES_MODULE
from shipyard.domain.chaos_journal import (
    describe_step,
    jsonable,
    report_from_journal,
    trim_journal,
)

START = datetime.fromisoformat("2026-01-05T10:00:00+00:00")
SLO_ARGUMENTS = {"max_failure_ratio": 0.005, "max_latency_p99_seconds": 0.5,
                 "min_requests": 1, "min_load_share": 0.25}


def at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat()


def provider(func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "python", "module": ACTIVITIES_MODULE, "func": func,
            "arguments": arguments}


WITHIN_SLO = {"type": "probe", "name": "within-slo",
              "provider": provider("within_slo", **SLO_ARGUMENTS)}


def window(failure_ratio: float = 0.0, p99: float = 0.02, requests: int = 200) -> dict:
    return {"requests": requests, "failures": round(requests * failure_ratio),
            "answered": requests, "failure_ratio": failure_ratio,
            "availability": 1 - failure_ratio, "latency_p50": 0.01, "latency_p95": 0.015,
            "latency_p99": p99, "expected_requests": 200.0}


def probe(output: Any, start: float, *, met: bool = True, tolerance: Any = WITHIN_SLO,
          name: str = "slo-through-the-service", status: str = "succeeded",
          exception: list[str] | None = None) -> dict[str, Any]:
    run = {"activity": {"type": "probe", "name": name, "tolerance": tolerance,
                        "provider": provider("http_steady_state", url="${shipyard_url}")},
           "output": output, "start": at(start), "end": at(start + 10), "status": status,
           "tolerance_met": met}
    if exception:
        run["exception"] = exception
    return run


def action(name: str, func: str, output: Any, start: float, end: float, *,
           status: str = "succeeded", exception: list[str] | None = None) -> dict[str, Any]:
    run = {"activity": {"type": "action", "name": name, "provider": provider(func)},
           "output": output, "start": at(start), "end": at(end), "status": status}
    if exception:
        run["exception"] = exception
    return run


KILLED = action("kill-pods", "kill_pods", {"candidates": ["web-a", "web-b", "web-c"],
                                           "killed": ["web-b"], "seed": 7}, 10.0, 10.2)


def journal(before: list[dict] | None, after: list[dict] | None = None, *,
            run: list[dict] | None = None, rollbacks: list[dict] | None = None,
            status: str = "completed", **extra: Any) -> dict[str, Any]:
    def state(probes: list[dict] | None) -> dict | None:
        if probes is None:
            return None
        return {"steady_state_met": all(p.get("tolerance_met") for p in probes),
                "probes": probes}

    after_state = state(after)
    return {"chaoslib-version": "1.44.0", "platform": "Linux", "node": "worker",
            "experiment": {"title": "web survives: kill 1 pod of app=web",
                           "steady-state-hypothesis": {"title": "web serves within its SLO"},
                           "configuration": {"shipyard_namespace": "shipyard-staging"}},
            "start": at(0), "end": at(40), "duration": 40.0, "status": status,
            "deviated": after_state is not None and not after_state["steady_state_met"],
            "steady_states": {"before": state(before), "after": after_state, "during": []},
            "run": run or [], "rollbacks": rollbacks or [], **extra}


def test_a_passed_run_reads_as_the_slo_rules_before_and_after_the_kill():
    report = report_from_journal(journal([probe(window(), 0)], [probe(window(), 15.2)],
                                         run=[KILLED]),
                                 target="app=web", source="generated")
    assert report.verdict == "passed" and report.reason == ""
    assert report.experiment == "web survives: kill 1 pod of app=web"
    assert [(p.name, p.value, p.tolerance, p.met) for p in report.before.probes] == [
        ("requests", 200.0, Tolerance.at_least(50), True),
        ("failure-ratio", 0.0, Tolerance.at_most(0.005), True),
        ("latency-p99", 0.02, Tolerance.at_most(0.5), True)]
    assert report.before_window == Window(0.0, 10.0)
    assert report.after_window == Window(15.2, 25.2)
    assert report.kills == (Kill("web-b", 10.2),)
    assert report.candidates == ("web-a", "web-b", "web-c")
    assert report.summary().startswith("passed: killed 1 of 3 pods (web-b); then requests 200")
    assert (report.target, report.source) == ("app=web", "generated")
    assert report.journal is not None and report.journal["status"] == "completed"


def test_a_hypothesis_unmet_after_the_method_deviates_naming_the_rule():
    report = report_from_journal(journal([probe(window(), 0)],
                                         [probe(window(failure_ratio=1.0), 15, met=False)],
                                         run=[KILLED]))
    assert report.reason == "ChaosDeviated"
    assert report.summary() == ("deviated: killed 1 of 3 pods (web-b); then failure-ratio 1, "
                                "expected ≤ 0.005")


def test_a_hypothesis_unmet_before_aborts_with_nothing_done_and_the_rollbacks_reported():
    cleared = action("clear-faults", "clear_faults", {"restored": False}, 10.1, 10.3)
    report = report_from_journal(journal([probe(window(p99=0.9), 0, met=False)],
                                         rollbacks=[cleared]))
    assert report.reason == "SteadyStateNotMet" and report.after is None
    assert report.summary() == ("aborted: the steady state did not hold before the method, "
                                "nothing was done: latency-p99 0.9, expected ≤ 0.5")
    assert [(r.name, r.succeeded, r.output) for r in report.rollbacks] == [
        ("clear-faults", True, {"restored": False})]


def test_a_probe_that_raised_is_unmet_and_says_why():
    failed = probe(None, 0, met=False, status="failed", exception=[
        "chaoslib.exceptions.ActivityFailed: httpx.ConnectError: refused\n"])
    report = report_from_journal(journal([failed]))
    [row] = report.before.probes
    assert (row.name, row.value, row.met) == ("slo-through-the-service", None, False)
    assert row.note == "failed: ConnectError: refused"


def test_an_action_that_failed_aborts_with_its_error():
    broken = action("inject-latency", "inject_faults", None, 10, 11, status="failed",
                    exception=["Traceback...\n", "chaoslib.exceptions.ActivityFailed: "
                               "shipyard.adapters.kube_client.KubeError: 403 forbidden\n"])
    report = report_from_journal(journal([probe(window(), 0)], [probe(window(), 12)],
                                         run=[broken]))
    assert report.reason == "ChaosMethodFailed"
    assert report.summary() == "aborted: action inject-latency failed: KubeError: 403 forbidden"


def test_a_range_on_a_field_of_the_window_reads_as_that_field_against_the_range():
    ranged = probe(window(failure_ratio=0.02), 0, met=False,
                   tolerance={"type": "range", "range": [0, 0.01], "target": "failure_ratio"})
    [row] = report_from_journal(journal([ranged])).before.probes
    assert (row.name, row.measure, row.value, row.tolerance, row.met) == (
        "slo-through-the-service", "failure_ratio", 0.02, Tolerance.between(0, 0.01), False)


def test_any_other_tolerance_is_shown_as_written_with_the_output_it_judged():
    exact = probe({"status": 200}, 0, tolerance=200, name="health")
    [row] = report_from_journal(journal([exact])).before.probes
    assert (row.measure, row.value, row.met) == ("value", None, True)
    assert row.tolerance == Tolerance.written("200")
    assert row.note == '{"status": 200}'


def test_the_slo_arguments_an_experiment_wrote_as_placeholders_are_read_from_its_configuration():
    tolerance = {"type": "probe", "name": "within-slo", "provider": provider(
        "within_slo", max_failure_ratio="${budget}", max_latency_p99_seconds=0.5,
        value=window())}
    data = journal([probe(window(), 0, tolerance=tolerance)])
    data["experiment"]["configuration"]["budget"] = 0.02
    rows = report_from_journal(data).before.probes
    assert rows[1].tolerance == Tolerance.at_most(0.02)


def test_several_probes_prefix_their_rules_with_their_names():
    data = journal([probe(window(), 0, name="web"), probe(window(), 10, name="api")])
    names = [p.name for p in report_from_journal(data).before.probes]
    assert names[:2] == ["web requests", "web failure-ratio"] and names[3] == "api requests"


@pytest.mark.parametrize("status", ["interrupted", "aborted"])
def test_a_run_chaos_toolkit_broke_off_is_aborted(status):
    report = report_from_journal(journal([probe(window(), 0)], status=status,
                                         engine_error="TypeError: boom"))
    assert report.reason == "ChaosInterrupted"
    assert report.summary() == f"aborted: Chaos Toolkit reports the run {status}: TypeError: boom"


def test_a_run_whose_hypothesis_never_ran_is_aborted():
    report = report_from_journal(journal(None, status="interrupted"))
    assert report.summary() == ("aborted: Chaos Toolkit reports the run interrupted before "
                                "the hypothesis was judged")


def test_a_report_of_a_journal_is_json():
    data = report_from_journal(journal([probe(window(), 0)], [probe(window(), 15)],
                                       run=[KILLED])).to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["kills"] == [{"pod": "web-b", "at_seconds": 10.2}]


# -- the journal, trimmed ------------------------------------------------------------------

def test_a_huge_output_is_cut_to_a_preview():
    trimmed = trim_journal(journal(None, run=[action("dump", "f", "x" * 50_000, 0, 1)]),
                           output_chars=1000)
    output = trimmed["run"][0]["output"]
    assert output["truncated"] and len(output["preview"]) == 1000


def test_an_exception_keeps_its_last_line():
    run = action("a", "f", None, 0, 1, status="failed",
                 exception=["Traceback (most recent call last):\n", "  File x\n",
                            "chaoslib.exceptions.ActivityFailed: ValueError: bad\n"])
    assert trim_journal(journal(None, run=[run]))["run"][0]["exception"] == "ValueError: bad"


def test_secrets_are_hidden_and_where_they_are_read_from_stays():
    data = journal(None)
    data["experiment"]["secrets"] = {"k8s": {"token": "s3cr3t",
                                             "ca": {"type": "env", "key": "CA"}}}
    secrets = trim_journal(data)["experiment"]["secrets"]
    assert secrets == {"k8s": {"token": "<redacted>", "ca": {"type": "env", "key": "CA"}}}


def test_a_journal_still_too_big_loses_the_experiment_body():
    data = journal(None)
    data["experiment"]["description"] = "d" * 30_000
    trimmed = trim_journal(data, total_chars=5_000)
    assert trimmed["experiment"] == {"title": "web survives: kill 1 pod of app=web",
                                     "trimmed": "the experiment was too big to keep"}


def test_what_json_cannot_hold_becomes_text_or_none():
    assert jsonable({"nan": math.nan, "inf": math.inf, "at": START, 1: (1, 2)}) == {
        "nan": None, "inf": None, "at": "2026-01-05 10:00:00+00:00", "1": [1, 2]}


# -- progress lines ------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "data", "line"), [
    ("hypothesis-before", {}, "steady state before the method: probing"),
    ("hypothesis-after-done", {"steady_state_met": False},
     "steady state after the method did NOT hold"),
    ("method", {}, "method: starting"),
    ("activity", {"type": "action", "name": "kill-pods"}, "action kill-pods: started"),
    ("activity-done", {"activity": {"type": "probe", "name": "slo"}, "status": "succeeded",
                       "output": window()},
     "probe slo: succeeded (200 requests, 0 failed, p99 0.02s)"),
    ("activity-done", KILLED, "action kill-pods: succeeded (killed web-b)"),
    ("activity-done", {"activity": {"type": "action", "name": "x"}, "status": "failed",
                       "exception": ["chaoslib.exceptions.ActivityFailed: OSError: gone\n"]},
     "action x: FAILED: OSError: gone"),
    ("unknown", {}, None),
])
def test_each_step_of_a_run_is_one_line_of_progress(kind, data, line):
    assert describe_step(kind, data) == line
