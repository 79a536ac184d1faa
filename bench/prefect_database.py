"""Why the stack gives Prefect a PostgreSQL server: N flow runs created at once (as
overlapping triggers do), against a Prefect server on SQLite and on the stack's PostgreSQL,
both started here in temporary homes.

    .venv/bin/python bench/prefect_database.py [--runs 10] [--repeat 3]

Prints, per database, the median wall time to create the N runs and how many failed, and
the ratio SQLite / PostgreSQL (same run, same machine: the ratio is the figure to compare).
Needs Debian's postgresql package (root installs it with `shipyard up --only postgres`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

from shipyard.adapters.postgres import PostgresServer
from shipyard.adapters.prefect_server import PrefectServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def create_runs(api_url: str, auth_string: str, runs: int) -> tuple[float, int]:
    """Create ``runs`` flow runs of one flow concurrently; (seconds, failures)."""
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api_url, auth_string=auth_string) as client:
        flow_id = await client.create_flow_from_name("bench-flow")
        deployment_id = await client.create_deployment(flow_id, "bench")
        started = time.perf_counter()
        results = await asyncio.gather(
            *(client.create_flow_run_from_deployment(deployment_id) for _ in range(runs)),
            return_exceptions=True)
        elapsed = time.perf_counter() - started
    return elapsed, sum(isinstance(r, BaseException) for r in results)


def measure(server: PrefectServer, runs: int, repeat: int) -> tuple[float, int]:
    os.environ.update({**server.env(), "PREFECT_UI_ENABLED": "false"})
    server.start()
    try:
        timings, failures = [], 0
        for _ in range(repeat):
            seconds, failed = asyncio.run(create_runs(server.api_url, server.auth_string(),
                                                      runs))
            timings.append(seconds)
            failures += failed
        return statistics.median(timings), failures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    postgres = PostgresServer(home / "postgres", free_port())
    try:
        postgres.initdb()
        postgres.start()
        postgres.ensure_role_and_databases("shipyard", ["prefect"])
        on_sqlite = PrefectServer(home / "prefect-sqlite", free_port())
        on_postgres = PrefectServer(home / "prefect-pg", free_port(),
                                    postgres.url("prefect", driver="asyncpg"))
        sqlite_s, sqlite_failed = measure(on_sqlite, args.runs, args.repeat)
        pg_s, pg_failed = measure(on_postgres, args.runs, args.repeat)
    finally:
        postgres.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(f"{args.runs} flow runs created at once, median of {args.repeat}:")
    print(f"  Prefect on SQLite:     {sqlite_s:7.2f} s  ({sqlite_failed} failed)")
    print(f"  Prefect on PostgreSQL: {pg_s:7.2f} s  ({pg_failed} failed)")
    print(f"  SQLite / PostgreSQL:   {sqlite_s / pg_s:7.1f}x")


if __name__ == "__main__":
    main()
