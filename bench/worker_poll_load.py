"""What a worker's polling costs the Prefect server and its database, against hearing of
runs on the events websocket.

    .venv/bin/python bench/worker_poll_load.py [--seconds 60]

``shipyard up --only postgres --only prefect`` in a temporary home, the stack's worker
stopped; then, --seconds each, with nothing else running: no worker at all (the baseline,
measured in the same run), Prefect's process worker polling every 10 s (Prefect's
default), 1 s and 0.25 s, and Shipyard's warm worker (its events subscription plus its
1 s safety poll). For each: the CPU the Prefect server and the PostgreSQL processes spent,
as a share of one core, and that share minus the baseline's; and the worker's own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from shipyard.adapters.background import BackgroundProcess  # noqa: E402
from shipyard.adapters.prefect_server import PrefectServer, PrefectWorker  # noqa: E402
from tests.support.stack import SHIPYARD, free_port  # noqa: E402

POOL = "shipyard"


def shipyard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SHIPYARD, *args], env=env, cwd=PROJECT, capture_output=True,
                          text=True, timeout=900, check=False)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of the live processes ``pids`` so far (Linux)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def tree(root: int) -> list[int]:
    """``root`` and its descendants now."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(parent, []).append(int(proc.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def postmaster(stack_home: Path) -> int:
    pid_file = next(stack_home.rglob("postmaster.pid"))
    return int(pid_file.read_text().split()[0])


def measure(server_pid: int, database_pid: int, worker_pid: int | None,
            seconds: float) -> tuple[float, float]:
    """Shares of one core over ``seconds``: server and database together, the worker's."""
    def server_side() -> float:
        return cpu_seconds(tree(server_pid)) + cpu_seconds(tree(database_pid))

    def worker_side() -> float:
        return cpu_seconds(tree(worker_pid)) if worker_pid else 0.0

    time.sleep(15)  # the start-up (the warm worker's zygote imports for 3 to 5 s) is not
    # the steady cost
    before, worker_before, started = server_side(), worker_side(), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    return ((server_side() - before) / elapsed * 100,
            (worker_side() - worker_before) / elapsed * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="shipyard-bench-poll-"))
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHIPYARD_"))},
           "SHIPYARD_HOME": str(home), "SHIPYARD_PREFECT_PORT": str(port),
           "SHIPYARD_POSTGRES_PORT": str(free_port()), "SHIPYARD_PROJECT_DIR": str(PROJECT),
           "PREFECT_UI_ENABLED": "false"}
    try:
        up = shipyard(env, "up", "--only", "postgres", "--only", "prefect")
        if up.returncode != 0:
            print(f"`shipyard up` failed:\n{up.stdout[-2000:]}{up.stderr[-2000:]}")
            return
        BackgroundProcess(f"prefect-worker-{POOL}", home / "prefect").stop(terms=2)
        server = PrefectServer(home / "prefect", port, "")
        server_pid = BackgroundProcess("prefect-server", home / "prefect").pid()
        assert server_pid is not None, "the Prefect server is not running"
        database_pid = postmaster(home / "stack")
        worker_env = (("SHIPYARD_HOME", str(home)),)
        rows: list[tuple[str, float, float]] = []
        baseline, _ = measure(server_pid, database_pid, None, args.seconds)
        rows.append(("no worker (baseline)", baseline, 0.0))
        print(f"{rows[-1][0]}: server and database {baseline:.1f}% of a core", flush=True)
        for label, worker_type, every in (
                ("process worker, poll every 10 s", "process", 10.0),
                ("process worker, poll every 1 s", "process", 1.0),
                ("process worker, poll every 0.25 s", "process", 0.25),
                ("warm worker, events + poll every 1 s", "shipyard-warm", 1.0)):
            worker = PrefectWorker(server, POOL, PROJECT, worker_env, worker_type=worker_type,
                                   query_seconds=every)
            worker.start()
            pid = BackgroundProcess(f"prefect-worker-{POOL}", home / "prefect").pid()
            try:
                load, own = measure(server_pid, database_pid, pid, args.seconds)
            finally:
                worker.stop()
            rows.append((label, load, own))
            print(f"{label}: server and database {load:.1f}% of a core "
                  f"({load - baseline:+.1f} points over no worker); the worker {own:.1f}%",
                  flush=True)
        print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        shipyard(env, "down", "--only", "prefect", "--only", "postgres")
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
