"""What recording costs: N no-op stages (``@stage``, recorded in the store) against N plain
Prefect tasks with the same parameters, awaited one after another inside a flow, through a
real Prefect server started here. Timed inside the flow body, so Prefect's own per-flow
costs (which vary by a second from run to run) stay out of the figure.

    .venv/bin/python bench/stage_overhead.py [--stages 20] [--repeat 5] [--database-url URL]

Prints the median wall time of each and their ratio (same run, same machine: the ratio is
the figure to compare across machines).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default=None,
                        help="store URL (default: SQLite in a temporary home)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    os.environ["SHIPYARD_HOME"] = str(home)
    if args.database_url:
        os.environ["SHIPYARD_DATABASE_URL"] = args.database_url

    from shipyard.adapters.prefect_server import PrefectServer

    server = PrefectServer(home / "prefect", free_port())
    os.environ.update({**server.env(), "PREFECT_UI_ENABLED": "false"})
    server.start()
    try:
        run_bench(args.stages, args.repeat)
    finally:
        server.stop()


def run_bench(n: int, repeat: int) -> None:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from shipyard.domain.pipeline import StageSpec
    from stages.lifecycle import begin_run, running
    from stages.runtime import RunContext, StageContext, StageResult, stage

    class Nothing(StageResult):
        pass

    @stage("noop")
    async def noop_stage(ctx: StageContext) -> Nothing:
        return Nothing()

    @task(name="noop", cache_policy=NO_CACHE, persist_result=False,
          task_run_name="{stage_ref}")
    async def noop_task(run: RunContext, stage_ref: str) -> Nothing:
        return Nothing()

    @flow(name="bench-plain")
    async def plain() -> float:
        run = RunContext("not-recorded")
        start = time.perf_counter()
        for i in range(n):
            await noop_task(run, stage_ref=f"s{i}")
        return time.perf_counter() - start

    @flow(name="bench-recorded")
    async def recorded() -> float:
        specs = [StageSpec(f"s{i}", (f"s{i - 1}",) if i else ()) for i in range(n)]
        run = await begin_run("bench", specs, run_id=None, trigger="bench")
        async with running(run):
            start = time.perf_counter()
            for i in range(n):
                await noop_stage(run, stage_ref=f"s{i}")
            return time.perf_counter() - start

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        return float(asyncio.run(fn()))

    timed(plain), timed(recorded)  # warm up: imports, store migration, flow registration
    plain_times = [timed(plain) for _ in range(repeat)]
    recorded_times = [timed(recorded) for _ in range(repeat)]
    p, r = statistics.median(plain_times), statistics.median(recorded_times)
    print(f"{n} sequential no-op tasks inside one flow, median of {repeat} flows:")
    print(f"  plain Prefect tasks : {p:.3f} s  ({p / n * 1000:.1f} ms per task)")
    print(f"  recorded @stage     : {r:.3f} s  ({r / n * 1000:.1f} ms per stage)")
    print(f"  ratio recorded/plain: {r / p:.2f}x  (+{(r - p) / n * 1000:.1f} ms per stage)")


if __name__ == "__main__":
    main()
