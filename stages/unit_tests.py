"""Unit tests: run one app's own test suite with pytest in a sandboxed container and record
its JUnit summary.

The suite is the repository's code, so it never runs on the host: it runs on the local
Docker engine in the app's test image (:mod:`shipyard.adapters.test_container`), with no
network, no host environment or secrets, a read-only root, a copy of the checkout's
``apps/`` mounted read-only, and the limits of ``SHIPYARD_TEST_*``
(:mod:`shipyard.adapters.sandbox`). Without an engine the stage fails; it never falls back
to the host.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from shipyard.adapters.app_image import installed_versions, local_packages
from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.docker_engine import DockerEngine, EngineError, default_engine_url
from shipyard.adapters.sandbox import (
    Limits,
    SandboxExit,
    SandboxOutputError,
    describe,
    read_output_file,
    run_confined,
    stage_source,
    writable_dir,
)
from shipyard.adapters.test_container import (
    REPORT_NAME,
    ensure_runner_image,
    pytest_confinement,
    runner_requirements,
)
from shipyard.adapters.wheelhouse import WheelhouseError, WheelhouseTimedOut, gather_wheels
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.test_report import InvalidTestReport, parse_junit_xml
from stages.runtime import StageContext, StageFailure, StageResult, stage
from stages.thread_log import ThreadLog

__all__ = ["TestResult", "unit_tests"]

# Only a backstop: the container's own limit (SHIPYARD_TEST_TIMEOUT_SECONDS, at most 6 h)
# ends the tests; this also covers gathering wheels and building the test image.
STAGE_TIMEOUT_SECONDS = 7 * 3600
MAX_REPORT_BYTES = 64 * 2**20


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
    image: str = ""  # the test image the suite ran in (empty in records made before)

    def summary(self) -> str:
        parts = [f"{self.passed} passed"]
        parts += [f"{n} {word}" for n, word in ((self.failed, "failed"),
                                                  (self.errors, "errors"),
                                                  (self.skipped, "skipped")) if n]
        return ", ".join(parts) + f" in {self.duration_seconds:.1f}s"


@stage("test", timeout_seconds=STAGE_TIMEOUT_SECONDS)
async def unit_tests(ctx: StageContext, workspace: str, app: str) -> TestResult:
    """Run ``apps/<app>``'s tests of the checked-out ``workspace`` in a sandbox; fail with
    ``TestsFailed`` (the failures named in the log), ``NoTests`` if none ran, ``TimedOut``
    or ``OutOfMemory`` past the container's limits, ``EngineUnavailable`` without an
    engine."""
    try:
        validate_app_name(app)
    except ValueError as err:
        raise StageFailure("InvalidInput", str(err)) from err
    apps = Path(workspace) / "apps"
    if not (apps / app / "app.yaml").is_file():
        raise StageFailure("UnknownApp", f"{apps / app} has no app.yaml: no app named {app!r}")
    engine = DockerEngine(default_engine_url())
    if not await asyncio.to_thread(engine.answers):
        raise StageFailure("EngineUnavailable",
                           f"the Docker engine at {engine.url} does not answer, and the tests "
                           f"of {app} run only in a container, never on the host: start it "
                           "(`shipyard up --only docker`) or set DOCKER_HOST")
    settings = ctx.settings
    limits = Limits(cpus=settings.test_cpus, memory_mib=settings.test_memory_mib,
                    pids=settings.test_pids, seconds=settings.test_timeout_seconds)
    scratch = settings.home / "sandbox" / ctx.run_id / app
    out = writable_dir(settings.home / "reports" / ctx.run_id / app)
    try:
        async with ThreadLog(ctx) as log:
            image = await _test_image(ctx, engine, apps, app, scratch / "image", log)
            source = await asyncio.to_thread(stage_source, apps, scratch / "apps")
            confinement = pytest_confinement(image, app, apps=source, out=out, limits=limits,
                                             labels={"dev.shipyard.run": ctx.run_id,
                                                     "dev.shipyard.app": app})
            await ctx.log(describe(confinement))
            await ctx.log(f"$ pytest apps/{app}")
            try:
                ended = await run_confined(engine, confinement, log)
            except EngineError as err:
                raise StageFailure("EngineUnavailable", str(err)) from err
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    _fail_on_limits(app, ended, limits)
    return await _result(ctx, app, out / REPORT_NAME, ended, image)


async def _test_image(ctx: StageContext, engine: DockerEngine, apps: Path, app: str,
                      work: Path, log: ThreadLog) -> str:
    """The app's test image: its wheels gathered (or found) and the image built (or
    found)."""
    try:
        requirements = runner_requirements(apps / app, local_packages(apps))
        constraints = await asyncio.to_thread(installed_versions)
        wheels = await run_blocking(
            gather_wheels, requirements, store=ctx.settings.wheelhouse_dir,
            constraints=constraints, pip_cache=ctx.settings.pip_cache_dir, on_line=log,
            timeout_seconds=ctx.settings.pip_timeout_seconds)
    except WheelhouseTimedOut as err:
        raise StageFailure("TimedOut", str(err)) from err
    except WheelhouseError as err:
        raise StageFailure("WheelsFailed", str(err)) from err
    try:
        image, built = await run_blocking(ensure_runner_image, engine, wheels, work, log)
    except EngineError as err:
        raise StageFailure("TestImageFailed", str(err)) from err
    await log.drain()
    await ctx.log(f"test image {image} ({'built now, without network' if built else 'cached'})")
    return image


def _fail_on_limits(app: str, ended: SandboxExit, limits: Limits) -> None:
    if ended.timed_out:
        raise StageFailure("TimedOut", f"the tests of {app} ran past the limit of "
                           f"{limits.seconds:g} s (SHIPYARD_TEST_TIMEOUT_SECONDS): the "
                           "container was killed")
    if ended.out_of_memory:
        raise StageFailure("OutOfMemory", f"the tests of {app} used more than "
                           f"{limits.memory_mib} MiB (SHIPYARD_TEST_MEMORY_MIB): the kernel "
                           "killed them")


async def _result(ctx: StageContext, app: str, report_path: Path, ended: SandboxExit,
                  image: str) -> TestResult:
    try:
        text = await asyncio.to_thread(read_output_file, report_path,
                                       max_bytes=MAX_REPORT_BYTES)
        report = parse_junit_xml(text)
    except (SandboxOutputError, InvalidTestReport) as err:
        raise StageFailure("NoTestReport",
                           f"pytest exited {ended.exit_code} without a readable report: {err}"
                           ) from err
    result = TestResult(
        app=app, passed=report.passed, failed=report.failed, errors=report.errors,
        skipped=report.skipped, duration_seconds=report.duration_seconds,
        failures=[f.test_id for f in report.failures[:20]], image=image,
    )
    if report.total == 0:
        raise StageFailure("NoTests", f"apps/{app} has no tests: pytest collected none")
    if not report.ok or ended.exit_code != 0:
        await ctx.log("failed: " + ", ".join(result.failures))
        raise StageFailure("TestsFailed", f"{app}: {result.summary()}")
    return result
