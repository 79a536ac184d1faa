"""Several OS processes write to one SQLite store at the same moment, as the CLI, the
webhook server and Prefect flow runs do. Every write must land; none may fail with
"database is locked".

Each worker is a fresh interpreter (``subprocess`` running this venv's Python), so nothing
is shared but the file. Workers import first, report ready, and start writing only when the
test releases them all together, beginning with opening (and migrating) the empty store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shipyard.domain.states import State
from shipyard.store import Ledger, Store
from shipyard.store.models import StageLog, StateTransition, WebhookDelivery

pytestmark = pytest.mark.integration

WORKERS = 4
RUNS_PER_WORKER = 50
DELIVERIES = 40

# Per run: created, run started, two stages each started and succeeded, run succeeded.
TRANSITIONS_PER_RUN = 7

RUNS_WORKER = textwrap.dedent("""
    import json, sys
    from shipyard.domain.pipeline import StageSpec
    from shipyard.domain.states import State
    from shipyard.store import Store

    url, worker, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    sys.stdin.readline()
    store = Store.open(url)
    stages = [StageSpec("build"), StageSpec("test", ("build",))]
    done = []
    for n in range(runs):
        run_id = store.create_run("ci", stages, trigger="manual", app=worker).id
        for ref in ("build", "test"):
            store.transition_stage(run_id, ref, State.RUNNING, reason="Started")
            store.append_log(run_id, ref, f"{worker} run {n} {ref}\\n")
            store.transition_stage(run_id, ref, State.SUCCEEDED, reason="Succeeded")
        done.append(store.finish_run(run_id).state.value)
    print(json.dumps(done), flush=True)
""")

DELIVERY_WORKER = textwrap.dedent("""
    import json, sys
    from shipyard.store import Ledger, Store

    url, worker, deliveries = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    sys.stdin.readline()
    ledger = Ledger(Store.open(url))
    new = []
    for n in range(deliveries):
        record, is_new = ledger.record_delivery(delivery_id=f"gh-{n}", event="push",
                                                outcome="accepted", detail=worker)
        if is_new:
            new.append(record.delivery_id)
    print(json.dumps(new), flush=True)
""")


def run_together(script: str, url: str, count: int) -> list[list[str]]:
    """Start one process per worker, release them at once, and return each one's last
    line of output, parsed; fail with its stderr if any process failed."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, f"worker{i}", str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(WORKERS)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready", worker.stderr
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert "database is locked" not in stderr
        assert worker.returncode == 0, stderr
    return [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """An empty SQLite file: the workers race to create and migrate it, too."""
    return f"sqlite:///{tmp_path / 'shared' / 'shipyard.db'}"


def test_processes_creating_and_running_runs_at_once_all_succeed(store_url: str) -> None:
    results = run_together(RUNS_WORKER, store_url, RUNS_PER_WORKER)

    assert results == [[State.SUCCEEDED.value] * RUNS_PER_WORKER] * WORKERS
    store = Store.open(store_url)
    try:
        runs = store.list_runs(limit=10 * WORKERS * RUNS_PER_WORKER)
        assert len(runs) == WORKERS * RUNS_PER_WORKER
        assert {r.state for r in runs} == {State.SUCCEEDED}
        for i in range(WORKERS):
            assert len(store.list_runs(app=f"worker{i}", limit=1000)) == RUNS_PER_WORKER
        with store.reading() as session:
            transitions = session.scalar(select(func.count()).select_from(StateTransition))
            logs = session.scalar(select(func.count()).select_from(StageLog))
        assert transitions == WORKERS * RUNS_PER_WORKER * TRANSITIONS_PER_RUN
        assert logs == WORKERS * RUNS_PER_WORKER * 2
        sample = runs[0].id
        assert [t.to_state for t in store.transitions(sample)] == [
            State.QUEUED, State.RUNNING, State.RUNNING, State.SUCCEEDED, State.RUNNING,
            State.SUCCEEDED, State.SUCCEEDED]
    finally:
        store.close()


def test_a_webhook_redelivered_to_several_processes_is_new_exactly_once(
    store_url: str,
) -> None:
    results = run_together(DELIVERY_WORKER, store_url, DELIVERIES)

    claimed = [delivery for worker in results for delivery in worker]
    assert sorted(claimed) == sorted(f"gh-{n}" for n in range(DELIVERIES))
    store = Store.open(store_url)
    try:
        with store.reading() as session:
            assert session.scalar(
                select(func.count()).select_from(WebhookDelivery)) == DELIVERIES
        # Every process saw the record of whichever process was first.
        for n in range(DELIVERIES):
            record, new = Ledger(store).record_delivery(delivery_id=f"gh-{n}", event="push",
                                                        outcome="ignored")
            assert not new
            assert record.outcome == "accepted"
            assert f"gh-{n}" in results[int(record.detail.removeprefix("worker"))]
    finally:
        store.close()


OPEN_WORKER = textwrap.dedent("""
    import json, sys
    from shipyard.store import Store

    url = sys.argv[1]
    print("ready", flush=True)
    sys.stdin.readline()
    Store.open(url).close()
    print(json.dumps([]), flush=True)
""")


@pytest.mark.parametrize("attempt", range(5))
def test_processes_opening_one_empty_store_at_once_migrate_it_once(
    tmp_path: Path, attempt: int,
) -> None:
    """Each process reads the revision under the write lock: none repeats another's
    migration (a second ADD COLUMN would fail with "duplicate column name")."""
    url = f"sqlite:///{tmp_path / f'fresh{attempt}' / 'shipyard.db'}"

    run_together(OPEN_WORKER, url, 0)

    store = Store.open(url)
    try:
        assert store.list_runs() == []
    finally:
        store.close()
