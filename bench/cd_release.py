"""The cd pipeline's figures on the local stack (`shipyard up` first; it deploys into the
stack's own shipyard-staging and shipyard-prod namespaces):

* the time of each stage of one app's release (ci reused, bake, staging, canary, chaos,
  red/black, scale-down) and the run's orchestration overhead: its wall time minus the
  stages' critical path;
* the red/black switch under a steady load on the production Service: the switch time
  the stage measured, and the requests that failed during the whole release;
* a warm rollback under the same load: from the command to 99% of answers on the old
  version, and the requests that failed.

Two versions of the app come from a scratch repository holding this checkout's apps: the
second commit only edits the app's README, so its image is reused and the version (the
commit) differs.

    SHIPYARD_STACK_HOME=/var/tmp/shipyard-ci/stack python bench/cd_release.py --app discovery
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from git import Actor, Repo

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from shipyard.adapters.kube import Kube  # noqa: E402
from shipyard.adapters.load import LoadSpec, start_load  # noqa: E402
from shipyard.domain.traffic import Sample, summarize, switch_time  # noqa: E402
from shipyard.settings import load_settings  # noqa: E402
from shipyard.store import RunRecord, Store  # noqa: E402
from stages.rollouts import service_url  # noqa: E402

AUTHOR = Actor("Bench", "bench@example.com")


def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "shipyard.cli", *args], cwd=PROJECT,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"shipyard {' '.join(args)} failed:\n{done.stdout[-3000:]}"
                         f"{done.stderr}")
    return done


def scratch_repo(app: str) -> tuple[Path, str, str]:
    path = Path(tempfile.mkdtemp(prefix="bench-cd-"))
    shutil.copytree(PROJECT / "apps", path / "apps",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    repo = Repo.init(path, initial_branch="main")
    repo.index.add([str(p.relative_to(path)) for p in (path / "apps").rglob("*")
                    if p.is_file()])
    first = repo.index.commit("apps", author=AUTHOR, committer=AUTHOR).hexsha
    readme = path / "apps" / app / "README.md"
    readme.write_text(readme.read_text() + f"\nBench edit {time.time()}.\n")
    repo.index.add([str(readme.relative_to(path))])
    second = repo.index.commit("a second version", author=AUTHOR, committer=AUTHOR).hexsha
    return path, first, second


def newest(store: Store, pipeline: str) -> RunRecord:
    return store.get_run(store.list_runs(limit=1, pipeline=pipeline)[0].id)


def critical_path(run: RunRecord) -> float:
    """The longest chain of stage durations through the run's graph (seconds)."""
    longest: dict[str, float] = {}
    for stage in run.stages:  # stages are stored in graph order
        own = ((stage.finished_at - stage.started_at).total_seconds()
               if stage.started_at and stage.finished_at else 0.0)
        longest[stage.ref] = own + max((longest.get(r, 0.0) for r in stage.requires),
                                       default=0.0)
    return max(longest.values(), default=0.0)


def report_run(run: RunRecord) -> None:
    print(f"  {'stage':24} {'seconds':>8}  state")
    for stage in run.stages:
        own = ((stage.finished_at - stage.started_at).total_seconds()
               if stage.started_at and stage.finished_at else 0.0)
        print(f"  {stage.ref:24} {own:8.2f}  {stage.state.value}")
    wall = (run.finished_at - run.created_at).total_seconds() if run.finished_at else 0.0
    path = critical_path(run)
    print(f"  wall {wall:.1f}s, stages' critical path {path:.1f}s, orchestration overhead "
          f"{wall - path:.1f}s ({(wall - path) / wall:.0%} of the wall time)")


async def under_load(url: str, seconds: float,
                     action: Callable[[], object]) -> tuple[list[Sample], float]:
    load = start_load(LoadSpec(base_url=url, rate_per_second=40, duration_seconds=seconds,
                               max_requests=int(40 * seconds) + 10, keep_alive=False))
    await asyncio.sleep(2)
    started = load.since_start(time.monotonic())
    await asyncio.to_thread(action)
    await asyncio.sleep(3)
    return await load.stop(), started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="discovery")
    parser.add_argument("--canary-window", default="20")
    parser.add_argument("--all-apps", action="store_true",
                        help="release every app first (the four-app release from commit "
                             "to production, and its overhead)")
    args = parser.parse_args()
    settings = load_settings()
    store = Store.open(settings.store_url)
    kube = Kube.from_kubeconfig(settings.kubeconfig_file)
    prod = settings.namespace_for("prod")
    repo, first, second = scratch_repo(args.app)
    common = ["--repo", str(repo), "--app", args.app, "--canary-window", args.canary_window]

    if args.all_apps:
        print(f"release of every app ({first[:12]}), commit to production")
        shipyard("release", "--repo", str(repo), "--ref", first, "--canary-window",
                 args.canary_window, "--warm-seconds", "0", "--timeout", "3600")
        report_run(newest(store, "release"))
    print(f"\nrelease 1 of {args.app} ({first[:12]}): production gets a baseline")
    shipyard("release", "--ref", first, *common, "--warm-seconds", "0", "--timeout", "1800")
    report_run(newest(store, "release"))

    url = service_url(kube, prod, args.app)
    print(f"\nrelease 2 ({second[:12]}) under 40 req/s on {url}")

    def second_release() -> None:
        shipyard("release", "--ref", second, *common, "--warm-seconds", "120", "--no-wait")
        _wait_for_prod(store)

    samples, _ = asyncio.run(under_load(url, 900, second_release))
    run = newest(store, "release")
    deploy = run.stage(f"prod:{args.app}").outputs
    print(f"  switch measured by the stage: {deploy.get('switch_seconds')}s "
          f"({deploy.get('failed_requests')} of {deploy.get('probe_requests')} probes failed)")
    during = summarize(samples)
    print(f"  steady load during the release: {during.failures} of {during.requests} "
          "requests failed")

    print("\nwarm rollback under 40 req/s")
    samples, started = asyncio.run(under_load(url, 60, lambda: shipyard(
        "rollback", args.app, "--reason", "bench")))
    back = switch_time(samples, first[:12], after=started)
    during = summarize(samples)
    print(f"  from the command to 99% on {first[:12]}: "
          + (f"{back:.2f}s" if back is not None else "never"))
    print(f"  {during.failures} of {during.requests} requests failed")
    rollback = newest(store, "rollback")
    print(f"  rollback mode: {rollback.stage('rollback').outputs.get('mode')}")
    _wait_until_done(store, run.id)
    shutil.rmtree(repo, ignore_errors=True)


def _wait_for_prod(store: Store) -> bool:
    run = newest(store, "release")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        run = store.get_run(run.id)
        done = [s for s in run.stages if s.ref.startswith("prod:") and s.state.is_terminal]
        if done or run.state.is_terminal:
            return True
        time.sleep(1)
    raise SystemExit("the second release did not reach production in 15 minutes")


def _wait_until_done(store: Store, run_id: str) -> None:
    deadline = time.monotonic() + 300
    while not store.get_run(run_id).state.is_terminal and time.monotonic() < deadline:
        time.sleep(2)


if __name__ == "__main__":
    main()
