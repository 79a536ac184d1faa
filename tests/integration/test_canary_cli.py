"""``shipyard canary``: the real CLI on files, judging, planning, backtesting, and refusing
bad input with one line naming the file and the field (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]

CONFIG = {
    "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
    "metrics": [
        {"name": "errors", "groups": ["errors"], "analysisConfigurations": {"canary": {
            "direction": "increase", "nanStrategy": "replace", "critical": True}}},
        {"name": "latency", "groups": ["latency"], "analysisConfigurations": {"canary": {
            "direction": "increase"}}},
    ],
    "classifier": {"groupWeights": {"errors": 60, "latency": 40}},
}
ERRORS = [2, 3, 2, 4, 3, 2, 3, 3, 2, 4] * 3
LATENCY = [0.1 + (i % 10) * 0.001 for i in range(30)]
BASELINE = {"errors": ERRORS, "latency": LATENCY}


def shipyard(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHIPYARD_"))}
    env.update(SHIPYARD_HOME=str(home), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "shipyard.cli", "canary", *args], env=env,
                          cwd=PROJECT, capture_output=True, text=True, timeout=120,
                          check=False)


def write(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def judge(tmp_path: Path, config: Any, baseline: Any, canary: Any,
          *extra: str) -> subprocess.CompletedProcess[str]:
    return shipyard(tmp_path, "judge", "--config", str(write(tmp_path, "config.json", config)),
                    "--baseline", str(write(tmp_path, "baseline.json", baseline)),
                    "--canary", str(write(tmp_path, "canary.json", canary)), *extra)


def test_a_canary_like_its_baseline_passes(tmp_path: Path):
    canary = {"errors": ERRORS, "latency": [*LATENCY[:-1], None]}
    done = judge(tmp_path, CONFIG, BASELINE, canary, "--series")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["score"], result["verdict"]) == (100.0, "pass")
    latency = result["metrics"]["latency"]
    assert latency["classification"] == "Pass" and latency["critical_failure"] is False
    assert latency["canary"]["count"] == 29  # the null was removed
    assert len(latency["canary_values"]) == 29


def test_a_canary_with_twice_the_errors_fails_critically_and_still_exits_0(tmp_path: Path):
    done = judge(tmp_path, CONFIG, BASELINE,
                 {"errors": [2 * e for e in ERRORS], "latency": LATENCY})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["score"], result["verdict"]) == (0.0, "fail")
    errors = result["metrics"]["errors"]
    assert errors["classification"] == "High" and errors["critical_failure"] is True
    assert errors["effect_size"] == pytest.approx(2.0)
    assert errors["ci_lower"] > 0 and errors["p_value"] < 0.02
    assert result["group_scores"] == {"errors": 0.0, "latency": 100.0}
    assert "canary_values" not in errors


@pytest.mark.parametrize(("files", "expected"), [
    ({"config": "{not json"}, ["--config", "config.json: not JSON: Expecting property name"]),
    ({"config": {**CONFIG, "metrics": [{"name": "errors", "groups": ["errors"],
                                        "analysisConfigurations": {"canary": {
                                            "direction": "up"}}}]}},
     ["--config", "config.json: metrics[0].analysisConfigurations.canary.direction: 'up' is "
                  "not one of increase, decrease, either"]),
    ({"baseline": [1, 2, 3]}, ["--baseline", "baseline.json: (top): must be an object of "
                                             "series"]),
    ({"canary": {"errors": 3}}, ["--canary", "canary.json: errors: must be an object of "
                                             "series"]),
    ({"canary": {"errors": [1, "two"]}}, ["--canary", "canary.json: errors[1]: \"two\" must be "
                                                      "a number or null"]),
    ({"canary": {"errors": [True]}}, ["--canary", "canary.json: errors[0]: true must be a "
                                                  "number or null"]),
])
def test_bad_input_is_one_line_naming_the_file_and_the_field(
        tmp_path: Path, files: dict[str, Any], expected: list[str]):
    given = {"config": CONFIG, "baseline": BASELINE, "canary": BASELINE, **files}
    done = judge(tmp_path, given["config"], given["baseline"], given["canary"])
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    for part in expected:
        assert part in line


def test_an_unreadable_file_is_named(tmp_path: Path):
    config = write(tmp_path, "config.json", CONFIG)
    done = shipyard(tmp_path, "judge", "--config", str(config), "--baseline",
                    str(tmp_path / "missing.json"), "--canary", str(config))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "missing.json: cannot read it: No such file or directory" in line


def test_plan_says_how_long_the_window_must_be(tmp_path: Path):
    done = shipyard(tmp_path, "plan", "--interval", "10", "--points", "50", "--warmup", "60")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("window: 9m20s (560 s): warm-up 1m00s, then 50 points")
    planned = shipyard(tmp_path, "plan", "--interval", "10", "--window", "300", "--shift",
                       "0.1", "--json")
    result = json.loads(planned.stdout)
    assert result["points"] == 30 and result["meets_recommendation"] is False
    assert result["points_for_power_0_8"] == 154
    assert result["power"] == pytest.approx(0.175, abs=0.001)


def test_plan_refuses_a_zero_interval(tmp_path: Path):
    done = shipyard(tmp_path, "plan", "--interval", "0")
    assert done.returncode == 2
    assert "interval_seconds: 0 must be a positive number" in done.stderr


def test_backtest_reports_the_false_fail_rate(tmp_path: Path):
    cases = {"cases": [
        {"name": "same", "expected": "pass", "baseline": BASELINE, "canary": BASELINE},
        {"name": "doubled", "expected": "fail", "baseline": BASELINE,
         "canary": {**BASELINE, "errors": [2 * e for e in ERRORS]}},
        {"name": "innocent", "expected": "pass", "baseline": BASELINE,
         "canary": {**BASELINE, "latency": [v * 2 for v in LATENCY]}},
    ]}
    done = shipyard(tmp_path, "backtest", "--config",
                    str(write(tmp_path, "config.json", CONFIG)),
                    str(write(tmp_path, "cases.json", cases)))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # "innocent" doubles latency: its group scores 0, the summary 60, below marginal 75.
    assert report["verdicts"]["innocent"] == {"verdict": "fail", "score": 60.0}
    assert report["false_fails"] == ["innocent"] and report["false_passes"] == []
    assert report["false_fail_rate"] == 0.5 and report["false_pass_rate"] == 0.0
    bad = shipyard(tmp_path, "backtest", "--config", str(tmp_path / "config.json"),
                   str(write(tmp_path, "cases.json", {"cases": [{"name": "x",
                                                                  "expected": "maybe"}]})))
    assert bad.returncode == 2
    assert "cases.json: cases[0].expected: 'maybe' is not pass or fail" in bad.stderr


def test_a_muted_metric_is_reported_but_not_scored_and_the_request_sets_the_thresholds(
        tmp_path: Path):
    errors_metric: Any = CONFIG["metrics"]
    muted = {**CONFIG, "metrics": [
        errors_metric[0],
        {"name": "latency", "groups": ["latency"], "analysisConfigurations": {"canary": {
            "direction": "increase", "muted": True}}}]}
    slower = [3 * v for v in LATENCY]
    done = judge(tmp_path, muted, BASELINE, {"errors": ERRORS, "latency": slower})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    latency = result["metrics"]["latency"]
    assert latency["classification"] == "High" and latency["muted"] is True
    # The latency group's weight counts for nothing: errors alone pass, 60 of 100.
    assert result["score"] == 60.0
    assert result["verdict"] == "fail"  # below the config's default pass of 95
    request = write(tmp_path, "request.json", {"thresholds": {"pass": 55, "marginal": 40}})
    lowered = judge(tmp_path, muted, BASELINE, {"errors": ERRORS, "latency": slower},
                    "--request", str(request))
    assert lowered.returncode == 0, lowered.stderr
    assert json.loads(lowered.stdout)["verdict"] == "pass"
    refused = judge(tmp_path, muted, BASELINE, BASELINE, "--request",
                    str(write(tmp_path, "bad.json", {"thresholds": {"pass": 55}})))
    assert refused.returncode == 2 and "bad.json" in refused.stderr and "marginal" in \
        refused.stderr
