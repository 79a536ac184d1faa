"""What running an app's tests in a sandbox costs, against the same tests on the host.

Three ways, in the same run on the same machine:

* host: pytest on the host with the worker's environment (how ``test:<app>`` ran before
  the sandbox, kept here only as the baseline);
* container, cold: the wheels gathered into an empty wheelhouse (pip's cache is warm, as on
  any machine that built once), the test image built with no layer cache, then the tests;
* container, warm: the wheels and the image found by their keys, then the tests: what
  every run after the first pays.

Each container run copies ``apps/`` for the read-only mount, starts the container, runs
pytest and removes the container, as the stage does. Needs the Docker engine and the base
image (``shipyard up --only docker --only base-image``).

    .venv/bin/python bench/test_isolation.py [--app discovery] [--repeat 3] [--cpus 1]

Prints the median wall time of each, pytest's own time inside each, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker

from shipyard.adapters.app_image import installed_versions, local_packages
from shipyard.adapters.docker_engine import BASE_IMAGE, DockerEngine, default_engine_url
from shipyard.adapters.process import run_process
from shipyard.adapters.sandbox import Limits, Sandbox, stage_source, writable_dir
from shipyard.adapters.test_container import (
    REPORT_NAME,
    ensure_runner_image,
    pytest_confinement,
    runner_recipe,
    runner_requirements,
)
from shipyard.adapters.wheelhouse import Wheelhouse, gather_wheels
from shipyard.domain.test_report import parse_junit_xml
from shipyard.settings import Settings

PROJECT = Path(__file__).resolve().parent.parent
APPS = PROJECT / "apps"


def quiet(_: str) -> None:
    """Output is not the figure."""


def report_seconds(path: Path) -> float:
    report = parse_junit_xml(path.read_text())
    assert report.total > 0 and report.ok, f"the tests did not pass: {report}"
    return report.duration_seconds


def on_host(app: str, work: Path) -> tuple[float, float]:
    """(wall, pytest's time) of the suite on the host, as the stage ran it before."""
    report = work / "host-junit.xml"
    argv = [sys.executable, "-m", "pytest", str(APPS / app), "-q", "-p", "no:cacheprovider",
            "--rootdir", str(APPS / app), f"--junitxml={report}", "-o", "addopts=",
            "--import-mode=importlib"]
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    started = time.perf_counter()
    done = run_process(argv, cwd=APPS / app, env=env, timeout_seconds=900)
    wall = time.perf_counter() - started
    assert done.exit_code == 0, f"pytest on the host exited {done.exit_code}"
    return wall, report_seconds(report)


def in_container(engine: DockerEngine, app: str, image: str, work: Path,
                 limits: Limits) -> tuple[float, float]:
    """(wall, pytest's time) of the suite in a sandbox of ``image``."""
    started = time.perf_counter()
    source = stage_source(APPS, work / "apps")
    out = writable_dir(work / "out")
    ended = Sandbox(engine, pytest_confinement(image, app, apps=source, out=out,
                                               limits=limits, labels={})).run(quiet)
    wall = time.perf_counter() - started
    assert ended.exit_code == 0, f"pytest in the container exited {ended.exit_code}"
    return wall, report_seconds(out / REPORT_NAME)


def gather(app: str, store: Path, pip_cache: Path) -> Wheelhouse:
    return gather_wheels(runner_requirements(APPS / app, local_packages(APPS)), store=store,
                         constraints=installed_versions(), pip_cache=pip_cache,
                         on_line=quiet)


def cold(engine: DockerEngine, app: str, work: Path, pip_cache: Path,
         limits: Limits) -> tuple[float, float, float]:
    """(wall of wheels + image build + tests, of the build alone, pytest's time): a new
    wheelhouse and an image built with no layer cache, under a tag of the bench's own
    (removed after), so the stage's cached image is left alone."""
    started = time.perf_counter()
    wheels = gather(app, work / "wheelhouse", pip_cache)
    context = work / "image"
    (context / "wheels").mkdir(parents=True)
    (context / "Dockerfile").write_text(runner_recipe(engine.image_id(BASE_IMAGE)))
    for wheel in wheels.wheels():
        shutil.copyfile(wheel, context / "wheels" / wheel.name)
    (context / "wheels" / "requirements.txt").write_text("\n".join(wheels.requirements))
    image = f"shipyard-bench/test-runner:{uuid.uuid4().hex[:12]}"
    build_started = time.perf_counter()
    try:
        for _ in engine.build(context, image, nocache=True):
            pass
        build = time.perf_counter() - build_started
        _, inside = in_container(engine, app, image, work / "run", limits)
    finally:
        # The bench's own image only (the engine adapter has no call to remove one).
        docker.from_env().images.remove(image, force=True)
    return time.perf_counter() - started, build, inside


def warm(engine: DockerEngine, app: str, work: Path, settings: Settings,
         limits: Limits) -> tuple[float, float]:
    """(wall of finding the wheels and the image + tests, pytest's time)."""
    started = time.perf_counter()
    wheels = gather(app, settings.wheelhouse_dir, settings.pip_cache_dir)
    image, built = ensure_runner_image(engine, wheels, work / "image", quiet)
    assert not built, "the warm-up run builds the image"
    _, inside = in_container(engine, app, image, work / "run", limits)
    return time.perf_counter() - started, inside


def median(runs: list[tuple[float, ...]], index: int) -> float:
    return statistics.median(run[index] for run in runs)


def repeat(times: int, measure: Callable[[], tuple[float, ...]]) -> list[tuple[float, ...]]:
    return [measure() for _ in range(times)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="discovery")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpus", type=float, default=None,
                        help="the container's CPUs (default: SHIPYARD_TEST_CPUS)")
    args = parser.parse_args()
    settings = Settings()
    limits = Limits(cpus=args.cpus or settings.test_cpus, memory_mib=settings.test_memory_mib,
                    pids=settings.test_pids, seconds=settings.test_timeout_seconds)
    engine = DockerEngine(default_engine_url())
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-isolation-"))
    try:
        # The warm figures need the stage's image: make sure it exists (not timed).
        ensure_runner_image(engine, gather(args.app, settings.wheelhouse_dir,
                                           settings.pip_cache_dir), work / "first", quiet)
        host = repeat(args.repeat, lambda: on_host(args.app, work))
        cold_runs = repeat(1, lambda: cold(engine, args.app, work / "cold",
                                           settings.pip_cache_dir, limits))
        warm_runs = repeat(args.repeat, lambda: warm(engine, args.app, work / "warm",
                                                     settings, limits))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = median(host, 0)
    print(f"apps/{args.app}: {os.cpu_count()} CPUs on the host, container limited to "
          f"{limits.cpus:g} CPU and {limits.memory_mib} MiB; median of {args.repeat} "
          "(cold: 1 run)")
    print(f"{'':24} {'wall':>8} {'pytest':>8} {'ratio':>7}")
    print(f"{'host (baseline)':24} {base:7.1f}s {median(host, 1):7.1f}s {1:6.2f}x")
    print(f"{'container, warm':24} {median(warm_runs, 0):7.1f}s {median(warm_runs, 1):7.1f}s "
          f"{median(warm_runs, 0) / base:6.2f}x")
    print(f"{'container, cold':24} {median(cold_runs, 0):7.1f}s {median(cold_runs, 2):7.1f}s "
          f"{median(cold_runs, 0) / base:6.2f}x   (image build {median(cold_runs, 1):.1f}s)")


if __name__ == "__main__":
    main()
