"""Unit tests: run one app's own test suite with pytest and record its JUnit summary."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from shipyard.adapters.process import run_streaming
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.test_report import InvalidTestReport, parse_junit_xml
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["TestResult", "unit_tests"]

TEST_TIMEOUT_SECONDS = 900


class TestResult(StageResult):
    """Counts of one app's test run, with the first failures."""

    __test__ = False

    app: str
    passed: int
    failed: int
    errors: int
    skipped: int
    duration_seconds: float
    failures: list[str]

    def summary(self) -> str:
        parts = [f"{self.passed} passed"]
        parts += [f"{n} {word}" for n, word in ((self.failed, "failed"),
                                                  (self.errors, "errors"),
                                                  (self.skipped, "skipped")) if n]
        return ", ".join(parts) + f" in {self.duration_seconds:.1f}s"


@stage("test", timeout_seconds=TEST_TIMEOUT_SECONDS)
async def unit_tests(ctx: StageContext, workspace: str, app: str) -> TestResult:
    """Run ``apps/<app>``'s tests in the checked-out ``workspace``; fail with
    ``TestsFailed`` (the failures named in the log) or ``NoTests`` if none ran."""
    try:
        validate_app_name(app)
    except ValueError as err:
        raise StageFailure("InvalidInput", str(err)) from err
    app_dir = Path(workspace) / "apps" / app
    if not (app_dir / "app.yaml").is_file():
        raise StageFailure("UnknownApp", f"{app_dir} has no app.yaml: no app named {app!r}")
    report_path = ctx.settings.home / "reports" / ctx.run_id / f"{app}-junit.xml"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "pytest", str(app_dir), "-q", "-p", "no:cacheprovider",
            "--rootdir", str(app_dir), f"--junitxml={report_path}", "-o", "addopts=",
            "--import-mode=importlib"]
    await ctx.log(f"$ pytest apps/{app}")
    # The app's own suite, as a developer runs it: not the worker's CI flag (an app may
    # demand services in CI that this pipeline does not provide).
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = await run_streaming(argv, cwd=app_dir, on_line=ctx.log, env=env,
                               timeout_seconds=TEST_TIMEOUT_SECONDS)
    if done.timed_out:
        raise StageFailure("TimedOut", f"the tests of {app} ran past {TEST_TIMEOUT_SECONDS}s")
    try:
        text = await asyncio.to_thread(report_path.read_text, encoding="utf-8")
        report = parse_junit_xml(text)
    except (OSError, InvalidTestReport) as err:
        raise StageFailure("NoTestReport",
                           f"pytest exited {done.exit_code} without a readable report: {err}"
                           ) from err
    result = TestResult(
        app=app, passed=report.passed, failed=report.failed, errors=report.errors,
        skipped=report.skipped, duration_seconds=report.duration_seconds,
        failures=[f.test_id for f in report.failures[:20]],
    )
    if report.total == 0:
        raise StageFailure("NoTests", f"apps/{app} has no tests: pytest collected none")
    if not report.ok or done.exit_code != 0:
        await ctx.log("failed: " + ", ".join(result.failures))
        raise StageFailure("TestsFailed", f"{app}: {result.summary()}")
    return result
