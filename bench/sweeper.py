"""The run sweeper's cost per period with 10,000 runs in the store.

    .venv/bin/python bench/sweeper.py [--runs 10000] [--unfinished 50] [--sweeps 50]

Fills a fresh SQLite store with --runs runs, --unfinished of them still running (each with
a flow run id and a heartbeat), the rest ended, as the store's own INSERTs write them;
then times --sweeps dry sweeps (``Sweeper.sweep_once(dry_run=True)``): the store's read of
the unfinished runs and the judgment of each. Prefect's answer is a table here (its own
cost is one ``read_flow_runs`` request per 200 runs, measured against a real server in
the fault suite), so the figure is the sweeper's own cost.

Prints p50 and max per sweep, and as a baseline in the same run the time of reading one
run with its stages (``Store.get_run``), which the UI does on every run page.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from pipelines.sweeper import Sweeper
from shipyard.domain.sweeps import FlowRunView
from shipyard.store import Store
from shipyard.store.models import PipelineRun


def fill(store: Store, runs: int, unfinished: int) -> list[str]:
    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    flow_runs: list[str] = []
    for i in range(runs):
        live = i >= runs - unfinished
        flow_run = str(uuid.uuid4())
        created = now - timedelta(minutes=runs - i)
        rows.append({
            "id": uuid.uuid4().hex, "pipeline": "cd", "app": f"app{i % 4}",
            "trigger": "push", "actor": "bench", "repo_url": None, "ref": "main",
            "commit_sha": None, "parameters": {}, "state": "running" if live else "succeeded",
            "reason": "Started" if live else "Succeeded", "message": "",
            "created_at": created, "started_at": created,
            "finished_at": None if live else created + timedelta(seconds=90),
            "prefect_flow_run_id": flow_run, "restarted_from": None,
            "heartbeat_at": now if live else None})
        if live:
            flow_runs.append(flow_run)
    store.writing(lambda session: session.execute(insert(PipelineRun), rows))
    return flow_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--unfinished", type=int, default=50)
    parser.add_argument("--sweeps", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        store = Store.open(f"sqlite:///{Path(home) / 'shipyard.db'}")
        flow_runs = fill(store, args.runs, args.unfinished)
        answer = {f: FlowRunView("RUNNING", "", None) for f in flow_runs}

        async def views(ids: object) -> dict[str, FlowRunView]:
            return answer

        sweeper = Sweeper(store, interval_seconds=30, heartbeat_limit_seconds=120,
                          views=views)
        sweeps, reads = [], []
        some_run = store.list_runs(limit=1)[0].id
        for _ in range(args.sweeps):
            started = time.perf_counter()
            report = asyncio.run(sweeper.sweep_once(dry_run=True))
            sweeps.append(time.perf_counter() - started)
            started = time.perf_counter()
            store.get_run(some_run)
            reads.append(time.perf_counter() - started)
        assert report.checked == args.unfinished and not report.abandoned
        print(f"{args.runs} runs, {args.unfinished} unfinished, {args.sweeps} sweeps")
        print(f"sweep (dry):      p50 {statistics.median(sweeps) * 1000:7.2f} ms   "
              f"max {max(sweeps) * 1000:7.2f} ms")
        print(f"get_run baseline: p50 {statistics.median(reads) * 1000:7.2f} ms   "
              f"max {max(reads) * 1000:7.2f} ms")
        print(f"ratio sweep/get_run (p50): "
              f"{statistics.median(sweeps) / statistics.median(reads):.1f}")


if __name__ == "__main__":
    main()
