"""Runs whose canary and chaos stages recorded real reports, for the report pages' tests.

The canary report is what the real judge makes of a canary with twice the baseline's
errors (one latency point missing); the chaos report is the domain's own report of an
experiment that deviated after one pod of one was killed.
"""

from __future__ import annotations

from shipyard.domain.canary_config import parse_canary_config
from shipyard.domain.canary_judge import judge_canary
from shipyard.domain.chaos import (
    ChaosReport,
    HypothesisResult,
    Kill,
    ProbeResult,
    Tolerance,
    Transition,
    Window,
)
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import RunRecord, Store

__all__ = ["CANARY_CONFIG", "seed_canary_run", "seed_chaos_run"]

CANARY_CONFIG = {
    "metrics": [
        {"name": "errors", "groups": ["errors"], "analysisConfigurations": {"canary": {
            "direction": "increase", "nanStrategy": "replace", "critical": True}}},
        {"name": "latency", "groups": ["latency"], "analysisConfigurations": {"canary": {
            "direction": "increase"}}},
    ],
    "classifier": {"groupWeights": {"errors": 60, "latency": 40}},
    "scoreThresholds": {"pass": 95, "marginal": 75},
}


def seed_canary_run(store: Store, app: str = "gateway") -> RunRecord:
    """A cd run whose canary stage failed with the judge's report."""
    errors = [2.0, 3, 2, 4, 3, 2, 3, 3, 2, 4] * 3
    latency: list[float | None] = [0.1 + (i % 10) * 0.001 for i in range(30)]
    canary_latency = list(latency)
    canary_latency[7] = None
    judgement = judge_canary(parse_canary_config(CANARY_CONFIG),
                             {"errors": errors, "latency": latency},
                             {"errors": [e * 2 for e in errors], "latency": canary_latency})
    outputs = {"app": app, "baseline_version": "v1", "canary_version": "v2",
               "score": judgement.score, "verdict": judgement.verdict,
               "pass_threshold": 95.0, "marginal_threshold": 75.0, "points": 30,
               "report": {
                   **judgement.to_json(include_series=True), "provider": "prometheus",
                   "links": {"errors": {
                       track: f"http://127.0.0.1:9090/classic/graph?g0.expr={track}"
                       for track in ("baseline", "canary")}},
                   "cost": {"queries": 4, "seconds": 0.05},
                   "cross_checks": [{"provider": "pods", "score": 0.0, "verdict": "fail",
                                     "metrics": {"errors": "High", "latency": "Pass"}}]},
               "load": {"baseline": {"requests": 600, "failures": 0},
                        "canary": {"requests": 600, "failures": 0}}}
    run = store.create_run("cd", [StageSpec("canary")], trigger="manual", app=app)
    store.transition_stage(run.id, "canary", State.RUNNING, reason="Started")
    store.transition_stage(run.id, "canary", State.FAILED, reason="CanaryFailed",
                           message=f"score {judgement.score:g} is {judgement.verdict}",
                           outputs=outputs)
    return store.get_run(run.id)


def _hypothesis(ratio: float, p99: float) -> HypothesisResult:
    errors, latency = Tolerance.at_most(0.01), Tolerance.at_most(0.3)
    return HypothesisResult(
        "error rate under 1% and p99 under 300 ms", ratio <= 0.01 and p99 <= 0.3,
        (ProbeResult("errors", "failure_ratio", ratio, errors, errors.accepts(ratio)),
         ProbeResult("p99", "latency_p99", p99, latency, latency.accepts(p99))))


def seed_chaos_run(store: Store, app: str = "gateway") -> RunRecord:
    """A cd run whose chaos stage deviated: one pod of one killed, errors after."""
    report = ChaosReport(
        experiment=f"kill one of one {app} pods", target=f"{app} (staging)",
        candidates=(f"{app}-7d9-abcde",), before_window=Window(0, 6),
        before=_hypothesis(0.0, 0.05), kills=(Kill(f"{app}-7d9-abcde", 6.2),),
        after_window=Window(9, 15), after=_hypothesis(0.4, 1.2),
        transition=Transition(Window(6.2, 9), 55, 30))
    outputs = {"app": app, "verdict": report.verdict, "seed": 42,
               "report": report.to_json()}
    run = store.create_run("cd", [StageSpec("chaos")], trigger="manual", app=app)
    store.transition_stage(run.id, "chaos", State.RUNNING, reason="Started")
    store.transition_stage(run.id, "chaos", State.FAILED, reason="SteadyStateDeviated",
                           message=report.summary(), outputs=outputs)
    return store.get_run(run.id)
