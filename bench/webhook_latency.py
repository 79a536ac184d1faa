"""Webhook answer time under load, and the time from a push to its ci run's first stage.

    .venv/bin/python bench/webhook_latency.py [--rate 100] [--seconds 30] [--runs 5]
                                              [--in-flight 64] [--no-stack]
                                              [--workers process,warm] [--first-stage-only]

1. Answer time. Signed pushes to main, each a new delivery and a new commit (so each one
   records a queued ci run), are sent open-loop at --rate per second for --seconds to
   ``shipyard ui`` (real uvicorn) on loopback over --in-flight keep-alive connections:
   SQLite first, then a fresh database on the stack's PostgreSQL. A request's time counts
   from when it was due, so a slow answer also counts against the requests queued behind
   it (waiting for a free connection included). The ui's
   Prefect is a closed port: the runs stay queued (thousands of ci runs would swamp the
   machine), while the reconciler tries, fails and notes beside the requests. Every push
   passes the same guards as GitHub's (signature, allow-list, clone URL, replay check);
   only the per-address rate limit is lifted, since one address sends all of them.
2. Push to first stage. ``shipyard up --only postgres --only prefect`` in a temporary home
   (the Prefect server, the deployments, a worker polling every second), then --runs
   pushes of a small repository (a README, no apps: the figure is the orchestration, not
   the work), one at a time: from sending the push to the ci run's checkout stage
   starting, as the store records it. The repository is a local one, so the ui is told
   it may build it (``SHIPYARD_ALLOW_LOCAL_REPOSITORIES`` and the allow-list). Once per
   worker type of --workers (``SHIPYARD_WORKER``: Prefect's stock process worker, then
   Shipyard's warm one), in the same run, and the medians side by side at the end.

Prints p50, p90, p99 and max answer times per store, with the CPU the ui spent per request
and the machine's load average (other work on the machine shows in the tail), and the
push-to-first-stage times split at Prefect's own state times. The load generator is a
bare HTTP/1.1 client sending prepared requests, so little of the machine goes to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import httpx
from git import Actor, Repo
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.settings import (  # noqa: E402
    PREFECT_API_AUTH_STRING,
    PREFECT_API_URL,
    temporary_settings,
)

from shipyard.settings import Settings  # noqa: E402
from shipyard.store import Store  # noqa: E402
from tests.support.stack import SHIPYARD, free_port  # noqa: E402
from tests.support.webhooks import (  # noqa: E402
    SECRET,
    GitHub,
    Remote,
    local_repository,
    push_payload,
    serve_ui,
)

WARM_UP = 20


@dataclass
class Load:
    latencies: list[float]
    statuses: Counter[str]
    seconds: float

    def line(self, label: str) -> str:
        ms = sorted(x * 1000 for x in self.latencies)
        cut = statistics.quantiles(ms, n=100, method="inclusive")
        answers = ", ".join(f"{n} x {status}" for status, n in sorted(self.statuses.items()))
        return (f"{label:<11} {len(ms):>5} answered ({answers}) at "
                f"{len(ms) / self.seconds:5.1f}/s   p50 {cut[49]:6.1f} ms   "
                f"p90 {cut[89]:6.1f} ms   p99 {cut[98]:6.1f} ms   max {ms[-1]:6.1f} ms")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHIPYARD_"))}


class Connection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests and reads only the
    status line and the body's length: a client as light as wrk's, so the figures are the
    server's and not the client's (httpx costs more CPU per request than the ui does)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in lines
                      if line.lower().startswith("content-length:"))
        await self.reader.readexactly(length)
        return int(lines[0].split()[1])

    def close(self) -> None:
        self.writer.close()


def prepared(github: GitHub, host: str) -> bytes:
    """A signed push, new delivery and new commit, as bytes on the wire."""
    body = json.dumps(push_payload()).encode()
    headers = {"Host": host, "Content-Length": str(len(body)),
               **github.headers("push", body)}
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST /hooks/github HTTP/1.1\r\n{head}\r\n".encode() + body


async def send_load(url: str, rate: float, seconds: float, in_flight: int) -> Load:
    github = GitHub(url)
    host, port = url.removeprefix("http://").split(":")
    total = int(rate * seconds)
    requests = [prepared(github, f"{host}:{port}") for _ in range(WARM_UP + total)]
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(in_flight):
        idle.put_nowait(await Connection.open(host, int(port)))
    for request in requests[:WARM_UP]:  # caches, lazy imports, the first writes
        connection = await idle.get()
        await connection.send(request)
        idle.put_nowait(connection)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2

    async def one(index: int, request: bytes) -> None:
        due = start + index / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        connection = await idle.get()  # waiting for a free connection counts too
        try:
            status = await asyncio.wait_for(connection.send(request), 30)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as err:
            statuses[type(err).__name__] += 1
            idle.put_nowait(await Connection.open(host, int(port)))
            return
        idle.put_nowait(connection)
        latencies.append(loop.time() - due)
        statuses[str(status)] += 1

    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests[WARM_UP:])))
    elapsed = loop.time() - start
    while not idle.empty():
        idle.get_nowait().close()
    return Load(latencies, statuses, elapsed)


def answer_times(label: str, store_url: str, home: Path, args: argparse.Namespace) -> None:
    env = {**clean_env(), "SHIPYARD_HOME": str(home), "SHIPYARD_DATABASE_URL": store_url,
           "SHIPYARD_WEBHOOK_SECRET": SECRET, "SHIPYARD_REPOSITORIES": "acme/*",
           "SHIPYARD_WEBHOOK_RATE_PER_SECOND": "100000",
           "SHIPYARD_WEBHOOK_RATE_BURST": "1000000",
           "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}
    with serve_ui(env, home) as ui:
        cpu_before, load_before = cpu_seconds(ui.process.pid), os.getloadavg()[0]
        load = asyncio.run(send_load(ui.url, args.rate, args.seconds, args.in_flight))
        cpu = cpu_seconds(ui.process.pid) - cpu_before
        load_after = os.getloadavg()[0]
    store = Store.open(store_url)
    recorded = len(store.list_runs(limit=1_000_000))
    store.close()
    print(load.line(label), flush=True)
    print(f"{'':<11} runs recorded: {recorded} (warm-up {WARM_UP} included); the ui used "
          f"{cpu * 1000 / (len(load.latencies) + WARM_UP):.1f} ms of CPU per request; "
          f"machine load average {load_before:.1f} before, {load_after:.1f} after "
          f"({os.cpu_count()} CPUs)", flush=True)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    base = make_url(server_url)
    name = f"shipyard_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def shipyard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SHIPYARD, *args], env=env, cwd=PROJECT, capture_output=True,
                          text=True, timeout=900, check=False)


def small_repository(root: Path) -> Remote:
    source = Repo.init(root / "source", initial_branch="main")
    (root / "source" / "README.md").write_text("A repository with no apps.\n")
    source.index.add(["README.md"])
    author = Actor("Bench", "bench@example.com")
    source.index.commit("Start", author=author, committer=author)
    return Remote.clone(root / "source", root)


def settled(store: Store, run_id: str, *, seconds: float) -> str:
    """The run's final state, waited for (so the next push does not overlap it)."""
    deadline = time.monotonic() + seconds
    while not (state := store.get_run(run_id).state).is_terminal:
        if time.monotonic() > deadline:
            return f"still {state.value} after {seconds:.0f}s"
        time.sleep(0.2)
    return state.value


def _s(seconds: float | None) -> str:
    return "(never)" if seconds is None else f"{seconds:.2f} s"


async def flow_run_times(flow_run_id: str | None, sent: float) -> str:
    """When Prefect's worker took the flow run (PENDING) and it began (RUNNING), counted
    from the push: where the time between hand-over and first stage goes."""
    if flow_run_id is None:
        return ""
    async with get_client() as client:
        states = await client.read_flow_run_states(UUID(flow_run_id))
    seen = {s.type.value: s.timestamp.timestamp() - sent for s in reversed(states)}
    return ", ".join(f"{name.lower()} after {seen[name]:.2f} s"
                     for name in ("PENDING", "RUNNING") if name in seen) + ","


def first_stage_times(env: dict[str, str], store_url: str, home: Path, runs: int,
                      tag: str = "") -> float | None:
    """Push ``runs`` times, one at a time, to a repository of its own (``tag`` names it);
    the median push-to-first-stage seconds."""
    remote = small_repository(home / f"repo{tag}")
    store = Store.open(store_url)
    rows = []
    with serve_ui({**env, **local_repository(remote.url)}, home) as ui, \
            httpx.Client() as client:
        github = GitHub(ui.url, client=client)
        client.get(f"{ui.url}/healthz")  # the connection is open before the clock starts
        for n in range(runs):
            described = remote.push_commit(f"Push {n}", write={"README.md": f"push {n}\n"})
            sent = time.time()
            answer = github.send("push", described)
            answered = time.time() - sent
            run_id = answer.json()["run_id"]
            handed = started = None
            deadline = sent + 120
            while started is None and time.time() < deadline:
                run = store.get_run(run_id)
                if handed is None and run.prefect_flow_run_id:
                    handed = time.time() - sent
                checkout = next((s for s in run.stages if s.ref == "checkout"), None)
                if checkout is not None and checkout.started_at is not None:
                    started = (checkout.started_at
                               - datetime.fromtimestamp(sent, UTC)).total_seconds()
                time.sleep(0.02)
            final = settled(store, run_id, seconds=300)
            rows.append((answered, handed, started, final))
            flow = asyncio.run(flow_run_times(store.get_run(run_id).prefect_flow_run_id, sent))
            print(f"push {n}: answered in {answered * 1000:.1f} ms; after {_s(handed)} handed "
                  f"to Prefect, {flow} checkout started after {_s(started)}; run {final}",
                  flush=True)
    store.close()
    firsts = [r[2] for r in rows if r[2] is not None]
    if not firsts:
        return None
    print(f"push to first stage: median {statistics.median(firsts):.2f} s, "
          f"min {min(firsts):.2f} s, max {max(firsts):.2f} s over {len(firsts)} pushes")
    return statistics.median(firsts)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-stack", action="store_true",
                        help="SQLite answer times only: no PostgreSQL, no Prefect")
    parser.add_argument("--workers", default="process,warm",
                        help="worker types for the push-to-first-stage figure, in order")
    parser.add_argument("--first-stage-only", action="store_true",
                        help="skip the answer times under load")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-webhook-"))
    print(f"{args.rate:.0f} signed pushes/s for {args.seconds:.0f} s, at most "
          f"{args.in_flight} in flight, each a new run", flush=True)
    try:
        if not args.first_stage_only:
            answer_times("sqlite", f"sqlite:///{work / 'latency.db'}", work, args)
        if args.no_stack:
            return
        home = work / "stack-home"
        home.mkdir()
        prefect_port = free_port()
        env = {**clean_env(), "SHIPYARD_HOME": str(home),
               "SHIPYARD_PREFECT_PORT": str(prefect_port),
               "SHIPYARD_POSTGRES_PORT": str(free_port()), "SHIPYARD_PROJECT_DIR": str(PROJECT),
               "PREFECT_UI_ENABLED": "false", "COLUMNS": "200"}
        up = shipyard(env, "up", "--only", "postgres", "--only", "prefect")
        try:
            if up.returncode != 0:
                print(f"`shipyard up` failed; PostgreSQL and first-stage figures skipped:\n"
                      f"{up.stdout[-2000:]}{up.stderr[-2000:]}")
                return
            store_url = Settings(home=home, database_url=None).store_url
            if not args.first_stage_only:
                with fresh_database(store_url) as scratch:
                    answer_times("postgresql", scratch, work, args)
            api = f"http://127.0.0.1:{prefect_port}/api"
            ui_env = {**env, "SHIPYARD_WEBHOOK_SECRET": SECRET, "PREFECT_API_URL": api}
            auth = (home / "prefect" / "api-auth-string").read_text().strip()
            with temporary_settings(updates={PREFECT_API_URL: api,
                                             PREFECT_API_AUTH_STRING: auth}):
                medians: dict[str, float | None] = {}
                for worker in [w.strip() for w in args.workers.split(",") if w.strip()]:
                    env["SHIPYARD_WORKER"] = ui_env["SHIPYARD_WORKER"] = worker
                    restarted = shipyard(env, "up", "--only", "prefect")
                    if restarted.returncode != 0:
                        print(f"`shipyard up` with the {worker} worker failed:\n"
                              f"{restarted.stderr[-2000:]}")
                        return
                    print(f"== the {worker} worker", flush=True)
                    medians[worker] = first_stage_times(ui_env, store_url, home, args.runs,
                                                        tag=f"-{worker}")
                print("push to first stage, median (same run): " + "; ".join(
                    f"{worker} worker {_s(median)}" for worker, median in medians.items()))
        finally:
            shipyard(env, "down", "--only", "prefect", "--only", "postgres")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
