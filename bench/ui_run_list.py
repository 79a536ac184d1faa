"""The run list's answer time with 100,000 runs in the store.

    .venv/bin/python bench/ui_run_list.py [--runs 100000] [--requests 300]
                                           [--database-url URL]

Fills a fresh SQLite store (or the database at --database-url, which must be empty) with
--runs runs over four apps, eight states, a hundred branches and four triggers, spread
over 90 days, as the store's own INSERTs write them; then serves ``shipyard ui`` (real
uvicorn, in its own process) and asks, one request at a time over a keep-alive
connection with an API token, for the first page of the run list: unfiltered, by each
filter and by all of them, and a page deep in the list (the cursor after 20 pages). The
pages (HTML) are asked for too.

Prints p50, p99 and max per query, and as a baseline in the same run ``/healthz`` (no
database, no authentication): the ratio shows what the list costs over a bare answer on
this machine.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert

from shipyard.domain.access import Role
from shipyard.store import Accounts, Store
from shipyard.store.models import PipelineRun, StateTransition

PROJECT = Path(__file__).resolve().parents[1]
APPS = ("gateway", "discovery", "data", "streaming")
STATES = ("succeeded",) * 6 + ("failed", "running", "queued", "cancelled", "waiting",
                                "rolled_back")
TRIGGERS = ("push", "push", "manual", "restart")
PIPELINES = ("ci", "ci", "release", "cd", "promote", "rollback")


def fill(store: Store, runs: int, seed: int = 7) -> None:
    """``runs`` runs, newest now, each with its creation transition."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    now = datetime.now(UTC)
    batch: list[dict[str, object]] = []
    transitions: list[dict[str, object]] = []
    with store.engine.begin() as connection:
        for n in range(runs):
            created = now - timedelta(seconds=90 * 86400 * (runs - n) / runs)
            state = rng.choice(STATES)
            run_id = uuid.uuid4().hex
            batch.append({
                "id": run_id, "pipeline": rng.choice(PIPELINES), "app": rng.choice(APPS),
                "trigger": rng.choice(TRIGGERS), "actor": "bench",
                "repo_url": "file:///src", "ref": "main" if rng.random() < 0.5
                else f"feature/{rng.randrange(100)}", "commit_sha": uuid.uuid4().hex,
                "parameters": {}, "state": state, "reason": "Bench", "message": "",
                "created_at": created, "started_at": created,
                "finished_at": created + timedelta(seconds=rng.randrange(30, 900))
                if state not in ("running", "queued", "waiting") else None,
                "prefect_flow_run_id": None, "restarted_from": None})
            transitions.append({"run_id": run_id, "stage_ref": "", "from_state": None,
                                "to_state": "queued", "reason": "Created", "message": "",
                                "at": created})
            if len(batch) == 5000:
                connection.execute(insert(PipelineRun), batch)
                connection.execute(insert(StateTransition), transitions)
                batch, transitions = [], []
        if batch:
            connection.execute(insert(PipelineRun), batch)
            connection.execute(insert(StateTransition), transitions)


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "ui", "--port",
                                str(port)], env=env, cwd=PROJECT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("`shipyard ui` did not answer in 60 s")


def measure(client: httpx.Client, path: str, count: int) -> list[float]:
    for _ in range(10):  # warm-up: connection, caches, the database's pages
        client.get(path).raise_for_status()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        client.get(path).raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return times


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--database-url")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="shipyard-bench-ui-"))
    url = args.database_url or f"sqlite:///{home / 'shipyard.db'}"
    store = Store.open(url)
    started = time.perf_counter()
    fill(store, args.runs)
    print(f"store: {store.url}; {args.runs:,} runs written in "
          f"{time.perf_counter() - started:.1f} s")
    accounts = Accounts(store)
    accounts.add_user("bench", "bench password long enough", Role.VIEWER)
    token, _ = accounts.create_token("bench", owner="bench", role=Role.VIEWER)
    store.close()

    port = 20000 + os.getpid() % 20000
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PREFECT_"))}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_DATABASE_URL=url,
               PREFECT_API_URL="http://127.0.0.1:9/api",
               SHIPYARD_HAND_OVER_INTERVAL_SECONDS="3600")
    process = serve(env, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            cursor = None
            for _ in range(20):
                page = client.get("/api/runs", params={"cursor": cursor} if cursor else {})
                cursor = page.json()["next_cursor"]
            queries = {
                "/healthz (baseline)": "/healthz",
                "api: first page": "/api/runs",
                "api: app": "/api/runs?app=gateway",
                "api: status": "/api/runs?status=failed",
                "api: branch": "/api/runs?branch=feature/42",
                "api: trigger": "/api/runs?trigger=manual",
                "api: all five filters": "/api/runs?app=data&status=succeeded&branch=main"
                                         "&trigger=push&pipeline=ci",
                "api: page 21": f"/api/runs?cursor={cursor}",
                "page: /runs": "/runs",
                "page: /runs?app&status": "/runs?app=streaming&status=failed",
            }
            baseline = None
            print(f"{'query':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p99/base':>9}")
            for name, path in queries.items():
                times = measure(client, path, args.requests)
                if baseline is None:
                    baseline = p99(times)
                print(f"{name:28} {statistics.median(times):8.2f} {p99(times):8.2f} "
                      f"{max(times):8.2f} {p99(times) / baseline:8.1f}x")
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
