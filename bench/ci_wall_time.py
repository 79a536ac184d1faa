"""The ci pipeline's wall time for all four apps, cold and cached, and what orchestration
costs on top of the stages' own work.

A Prefect server (temporary home, SQLite) and a git repository holding this checkout's
apps with a fresh nonce in the shared kit (so no image of these sources exists yet) are
made here; the ci flow runs in-process three times:

1. cold: every app changed, pip's cache empty: test, build and push all four;
2. one app changed (a file added under apps/discovery): only discovery is rebuilt;
3. cached: the same commit again: nothing is tested or built, every image is reused.

Orchestration overhead = wall time - the critical path through the stages (checkout,
changes, then the slowest app's test + build + push), from the durations the stages
recorded. Needs the Docker engine, the registry and the base image
(``shipyard up --only docker --only registry --only base-image``).

    .venv/bin/python bench/ci_wall_time.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

from git import Actor, Repo

PROJECT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_repo(root: Path) -> Repo:
    shutil.copytree(PROJECT / "apps", root / "apps", ignore=shutil.ignore_patterns(
        "__pycache__", ".*_cache", "*.egg-info", "streaming-data", "*.db"))
    (root / "apps" / "servicekit" / "BUILD-NONCE").write_text(uuid.uuid4().hex)
    repo = Repo.init(root, initial_branch="main")
    repo.git.add("-A")
    author = Actor("Bench", "bench@example.com")
    repo.index.commit("apps", author=author, committer=author)
    return repo


def critical_path_seconds(run: object) -> float:
    from shipyard.store import RunRecord

    assert isinstance(run, RunRecord)
    seconds = {s.ref: s.duration_seconds or 0.0 for s in run.stages}
    apps = {ref.split(":", 1)[1] for ref in seconds if ":" in ref}
    slowest = max((sum(seconds.get(f"{kind}:{app}", 0.0) for kind in ("test", "build", "push"))
                   for app in apps), default=0.0)
    return seconds.get("checkout", 0.0) + seconds.get("changes", 0.0) + slowest


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-ci-"))
    os.environ.update(SHIPYARD_HOME=str(work / "home"), SHIPYARD_PIP_CACHE=str(work / "pip"))
    from shipyard.adapters.prefect_server import PrefectServer

    server = PrefectServer(work / "prefect", free_port())
    os.environ.update({**server.env(), "PREFECT_UI_ENABLED": "false"})
    server.start()
    try:
        from pipelines.ci import ci_flow
        from shipyard.store import Store
        from stages.runtime import current_settings

        repo = make_repo(work / "repo")
        store = Store.open(current_settings().store_url)
        rows = []
        for label in ("cold: all four apps", "one app changed", "cached: same commit"):
            if label == "one app changed":
                (work / "repo" / "apps" / "discovery" / "BENCH.md").write_text("changed\n")
                repo.git.add("-A")
                author = Actor("Bench", "bench@example.com")
                repo.index.commit("touch discovery", author=author, committer=author)
            started = time.perf_counter()
            result = asyncio.run(ci_flow(repo=str(work / "repo"), ref="main", trigger="bench"))
            wall = time.perf_counter() - started
            run = store.get_run(result.run_id)
            built = sorted(r.split(":", 1)[1] for r in (s.ref for s in run.stages)
                           if r.startswith("build:"))
            rows.append((label, wall, critical_path_seconds(run), built))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'ci run':24} {'wall':>8} {'stages':>8} {'overhead':>9}  built")
    for label, wall, path, built in rows:
        print(f"{label:24} {wall:7.1f}s {path:7.1f}s {wall - path:8.1f}s  "
              f"{', '.join(built) or 'nothing'}")


if __name__ == "__main__":
    main()
