"""A manual judgment, suspended against paused: the time from the answer to the next stage
starting, the memory a waiting judgment holds, and what a worker restart does to it.

    .venv/bin/python bench/judgment_latency.py [--runs 5] [--no-restart]
                                               [--workers process,warm]

Each worker type of ``--workers`` in turn (``SHIPYARD_WORKER``: Prefect's stock process
worker, Shipyard's warm one), in the same run, so their figures compare on equal load.

``shipyard up --only postgres --only prefect`` in a temporary home (the Prefect server, a
worker polling every second), then the two deployments of
``tests/support/judgment_flow.py``: ``judgment-probe`` (prepare → judgment → ship) as a
top-level flow run, whose judgment suspends, and ``judgment-probe-parent``, which runs it as
a subflow (as ``release`` runs ``ci``), whose judgment pauses. For each, --runs times: start
it, wait until the judgment waits, hold 3 s, read the memory (PSS) of the processes
executing the flow run, answer it through ``answer_judgment`` (what ``shipyard approve``
and the API call), and time from the answer as Prefect took it to the ``ship`` stage
starting, as the store records it. Unless --no-restart, one more of each waits while the
worker is stopped (as ``shipyard down`` stops it) and started again, then is answered:
does the pipeline go on?

Figures on this machine (2 CPUs shared with other work), 5 runs each, load average 1 to 3
(in brackets: an earlier run at load 2.5 to 4):

  suspend: answer to next stage p50 6.52 s, 5.90 to 7.70 s (p50 8.50 s, 6.70 to 9.11 s):
           Prefect's worker took the run after 0.5 to 0.8 s, the new process started the
           flow after 5.3 to 7.1 s, the next stage 0.5 to 0.7 s later. No process while it
           waits (0 MB). With the worker restarted while it waited, the next stage started
           8.81 s after the answer (9.52 s).
  pause:   answer to next stage p50 0.96 s, 0.93 to 0.98 s (p50 1.03 s, 0.97 to 1.29 s).
           The waiting process holds 135 MB. With the worker restarted while it waited, the
           pipeline never went on: the process died with the worker, Prefect took the
           answer all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from uuid import UUID

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.settings import (  # noqa: E402
    PREFECT_API_AUTH_STRING,
    PREFECT_API_URL,
    temporary_settings,
)

from shipyard.domain.states import State  # noqa: E402
from shipyard.settings import Settings  # noqa: E402
from shipyard.store import RunRecord, Store  # noqa: E402
from stages.judgment import judgment_key  # noqa: E402
from stages.judgments_service import answer_judgment  # noqa: E402
from tests.support.judgment_flow import (  # noqa: E402
    PARENT,
    PROBE,
    flow_processes,
    register_deployments,
    start_probe,
    stop_worker,
)
from tests.support.stack import SHIPYARD, free_port  # noqa: E402

HOLD_SECONDS = 3.0


def shipyard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SHIPYARD, *args], env=env, cwd=PROJECT, capture_output=True,
                          text=True, timeout=900, check=False)


def pss_mb(pids: list[int]) -> float:
    """The proportional set size of ``pids``: each page shared with other processes (a
    warm run's pages still shared with its zygote) counted by its share, so the figure
    compares a forked process with a fresh one fairly (RSS would count shared pages
    whole)."""
    total = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in rollup.splitlines()
                      if line.startswith("Pss:"))
    return total / 1024


async def waiting_run(store: Store, started: RunRecord, seconds: float = 120) -> RunRecord:
    """The run whose judgment waits: ``started`` itself, or the child run it started."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for summary in store.list_runs(limit=20, state=State.WAITING):
            run = store.get_run(summary.id)
            if run.id == started.id or (run.created_at >= started.created_at
                                        and run.pipeline == "judgment-probe"):
                return run
        await asyncio.sleep(0.1)
    raise TimeoutError(f"run {started.short_id} never waited for a judgment")


async def ship_started(store: Store, run_id: str, seconds: float) -> RunRecord | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = store.get_run(run_id)
        if run.stage("ship").started_at is not None or run.state.is_terminal:
            return run
        await asyncio.sleep(0.05)
    return None


async def resume_steps(flow_run_id: str, answered: datetime) -> str:
    """Where the time after the answer goes, from Prefect's own state times: the worker
    taking the rescheduled run (Pending) and the new process starting the flow (Running)."""
    async with get_client() as client:
        states = await client.read_flow_run_states(UUID(flow_run_id))
    seen: dict[str, float] = {}
    for state in states:
        after = (state.timestamp - answered).total_seconds()
        if after > -1 and state.type.value not in seen:
            seen[state.type.value] = after
    return ", ".join(f"{name.lower()} after {seen[name]:.2f} s"
                     for name in ("PENDING", "RUNNING") if name in seen)


async def one(store: Store, deployment: str, key: bytes, *,
              restart: dict[str, str] | None = None) -> tuple[float | None, float]:
    started = await start_probe(store, deployment)
    waiting = await waiting_run(store, started)
    await asyncio.sleep(HOLD_SECONDS)
    assert started.prefect_flow_run_id is not None
    held = pss_mb(flow_processes(started.prefect_flow_run_id))
    if restart is not None:
        stop_worker(Path(restart["SHIPYARD_HOME"]) / "prefect")
        up = shipyard(restart, "up", "--only", "prefect")
        if up.returncode != 0:
            raise RuntimeError(f"`shipyard up --only prefect` failed: {up.stderr[-2000:]}")
    answer = await answer_judgment(store, started.id, "approve", actor="bench", route="cli",
                                   key=key, comment="measured")
    after = await ship_started(store, waiting.id, seconds=60 if restart else 120)
    shipped = after.stage("ship").started_at if after is not None else None
    if shipped is None:
        return None, held
    if deployment == PROBE and restart is None:
        print(f"  suspend: {await resume_steps(started.prefect_flow_run_id, answer.answered_at)}"
              f", next stage after {(shipped - answer.answered_at).total_seconds():.2f} s",
              flush=True)
    return (shipped - answer.answered_at).total_seconds(), held


def summary(label: str, results: list[tuple[float | None, float]]) -> str:
    latencies = sorted(x for x, _ in results if x is not None)
    held = statistics.median(m for _, m in results)
    if not latencies:
        return f"{label}: the next stage never started"
    return (f"{label}: answer to next stage p50 {statistics.median(latencies):.2f} s "
            f"({latencies[0]:.2f} to {latencies[-1]:.2f} s, {len(latencies)} runs); "
            f"memory held while waiting {held:.0f} MB")


async def bench(env: dict[str, str], store: Store, key: bytes, runs: int,
                restart: bool) -> list[str]:
    """Both kinds of judgment, ``runs`` times each; returns their summary lines."""
    await register_deployments()
    summaries = []
    for label, deployment in (("suspend", PROBE), ("pause", PARENT)):
        results = []
        for n in range(runs):
            latency, held = await one(store, deployment, key)
            shown = "never" if latency is None else f"{latency:.2f} s"
            print(f"{label} {n}: answer to next stage {shown}; {held:.0f} MB held while "
                  "waiting", flush=True)
            results.append((latency, held))
        summaries.append(summary(label, results))
        print(summaries[-1], flush=True)
        if restart:
            latency, _ = await one(store, deployment, key, restart=env)
            print(f"{label}, worker restarted while waiting: " + (
                "the pipeline never went on (no ship stage within 60 s)" if latency is None
                else f"the next stage started {latency:.2f} s after the answer"), flush=True)
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-restart", action="store_true",
                        help="skip the worker restarts")
    parser.add_argument("--workers", default="process,warm",
                        help="worker types to measure, in order (SHIPYARD_WORKER values)")
    args = parser.parse_args()
    workers = [w.strip() for w in args.workers.split(",") if w.strip()]
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-judgment-"))
    prefect_port = free_port()
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith(("PREFECT_", "SHIPYARD_"))},
           "SHIPYARD_HOME": str(work), "SHIPYARD_PREFECT_PORT": str(prefect_port),
           "SHIPYARD_POSTGRES_PORT": str(free_port()), "SHIPYARD_PROJECT_DIR": str(PROJECT),
           "PREFECT_UI_ENABLED": "false", "COLUMNS": "200"}
    try:
        up = shipyard(env, "up", "--only", "postgres", "--only", "prefect")
        if up.returncode != 0:
            print(f"`shipyard up` failed:\n{up.stdout[-2000:]}{up.stderr[-2000:]}")
            return
        settings = Settings(home=work, database_url=None)
        store = Store.open(settings.store_url)
        api = f"http://127.0.0.1:{prefect_port}/api"
        auth = (work / "prefect" / "api-auth-string").read_text().strip()
        results: dict[str, list[str]] = {}
        with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}):
            for worker in workers:
                env["SHIPYARD_WORKER"] = worker
                restarted = shipyard(env, "up", "--only", "prefect")
                if restarted.returncode != 0:
                    print(f"`shipyard up` with the {worker} worker failed:\n"
                          f"{restarted.stderr[-2000:]}")
                    return
                print(f"== the {worker} worker", flush=True)
                results[worker] = asyncio.run(bench(env, store, judgment_key(settings),
                                                    args.runs, not args.no_restart))
        store.close()
        print("\n== side by side (same run)")
        for worker, lines in results.items():
            for line in lines:
                print(f"{worker:>8} worker, {line}")
    finally:
        shipyard(env, "down", "--only", "prefect", "--only", "postgres")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
