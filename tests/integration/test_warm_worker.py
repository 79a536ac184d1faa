"""The stack's warm worker (``shipyard-warm``, the default) and Prefect's stock process
worker (``SHIPYARD_WORKER=process``), each running real flow runs of the judgment probe
(prepare → judgment → ship) on the stack's Prefect server.

A warm run is forked from the zygote, yet is every bit a Prefect flow run: it has its task
runs and logs in Prefect, is cancelled from Prefect and from Shipyard, and is reported
crashed when its process dies. The stock worker still runs the same flows cold.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)

from pipelines.launch import follow_run
from shipyard.adapters.prefect import ensure_work_pool
from shipyard.adapters.prefect_server import PrefectServer, PrefectWorker
from shipyard.domain.states import State
from shipyard.store import RunRecord, Store
from tests.support.judgment_flow import (
    PARENT,
    flow_processes,
    register_deployments,
    start_probe,
)
from tests.support.prefect_runs import settled_prefect_state
from tests.support.stack import Stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

STOCK_POOL = "shipyard-stock"


@dataclass
class Probes:
    stack: Stack
    store: Store

    def parent_waiting(self, deployment: str = PARENT) -> tuple[RunRecord, RunRecord]:
        """A judgment-probe-parent run whose child's judgment pauses in its process."""
        parent = asyncio.run(start_probe(self.store, deployment))

        def child() -> RunRecord | None:
            for summary in self.store.list_runs(limit=50, state=State.WAITING):
                if summary.pipeline == "judgment-probe" and \
                        summary.created_at > parent.created_at:
                    return self.store.get_run(summary.id)
            return None
        waiting = eventually(child, seconds=120, what=f"the child of {parent.short_id}")
        return self.store.get_run(parent.id), waiting

    def settled(self, run: RunRecord, seconds: float = 120) -> RunRecord:
        return eventually(lambda: next((r for r in [self.store.get_run(run.id)]
                                        if r.state.is_terminal), None),
                          seconds=seconds, what=f"run {run.short_id} to end")


@pytest.fixture(scope="module")
def probes(prefect_stack: Stack) -> Iterator[Probes]:
    asyncio.run(register_deployments())
    store = Store.open(prefect_stack.store_url)
    try:
        yield Probes(prefect_stack, store)
    finally:
        store.close()


def zygote_of(pid: int) -> int | None:
    """The pid of ``pid``'s parent when that parent is a Shipyard zygote."""
    status = Path(f"/proc/{pid}/status").read_text()
    parent = int(next(line.split()[1] for line in status.splitlines()
                      if line.startswith("PPid:")))
    cmdline = Path(f"/proc/{parent}/cmdline").read_bytes()
    return parent if b"shipyard.worker.zygote" in cmdline else None


def forked_and_client(flow_run_id: str) -> tuple[int, int]:
    """The forked run's pid and its fork client's, from the flow run's processes."""
    pids = flow_processes(flow_run_id)
    forked = [pid for pid in pids if zygote_of(pid)]
    clients = [pid for pid in pids if b"fork_client.py" in
               Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(forked) == 1 and len(clients) == 1, (pids, forked, clients)
    return forked[0], clients[0]


def test_a_warm_run_is_forked_and_is_a_full_prefect_flow_run(probes: Probes) -> None:
    parent, child = probes.parent_waiting()
    flow_run_id = str(parent.prefect_flow_run_id)
    forked, _client = forked_and_client(flow_run_id)
    title = Path(f"/proc/{forked}/cmdline").read_bytes()
    assert b"forked by the shipyard zygote" in title and b"prefect.engine" in title
    # Its prepare stage ran in the forked process (the stage records its pid).
    assert child.stage("prepare").outputs["pid"] == forked
    done = probes.stack.shipyard("approve", parent.short_id)
    assert done.returncode == 0, done.stderr
    assert probes.settled(parent).state is State.SUCCEEDED
    assert settled_prefect_state(flow_run_id) == "COMPLETED"

    async def task_runs_and_logs() -> tuple[int, int]:
        async with get_client() as client:
            child_runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[UUID(str(child.prefect_flow_run_id))])))
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
            logs = await client.read_logs(log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])))
            assert child_runs and child_runs[0].parent_task_run_id is not None
            return len(tasks), len(logs)

    tasks, logs = eventually(lambda: (lambda t_l: t_l if t_l[1] else None)(
        asyncio.run(task_runs_and_logs())), seconds=30, what="the run's logs in Prefect")
    assert tasks >= 1, "the subflow's parent task run is in Prefect"
    assert logs >= 1, "the forked run's logs reached Prefect"


def test_a_warm_run_is_cancelled_from_shipyard_and_its_processes_end(probes: Probes) -> None:
    parent, _child = probes.parent_waiting()
    flow_run_id = str(parent.prefect_flow_run_id)
    forked, client = forked_and_client(flow_run_id)
    done = probes.stack.shipyard("cancel", parent.short_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert probes.settled(parent).state is State.CANCELLED
    assert settled_prefect_state(flow_run_id) == "CANCELLED"
    eventually(lambda: not Path(f"/proc/{forked}").exists() and
               not Path(f"/proc/{client}").exists(), seconds=30,
               what="the forked run and its client to end")


def test_a_warm_run_whose_process_dies_is_reported_crashed(probes: Probes) -> None:
    parent, _child = probes.parent_waiting()
    flow_run_id = str(parent.prefect_flow_run_id)
    forked, client = forked_and_client(flow_run_id)
    os.kill(forked, signal.SIGKILL)
    eventually(lambda: not Path(f"/proc/{client}").exists(), seconds=30,
               what="the fork client to end as its run did")
    assert settled_prefect_state(flow_run_id) == "CRASHED"
    # The stock process worker's exit status, as Prefect's worker reports it.
    log = (probes.stack.home / "prefect" / "prefect-worker-shipyard.log").read_text()
    assert f"Reported flow run '{flow_run_id}' as crashed" in log
    assert "Process exited with status code: -9" in log or "SIGKILL" in log

    async def followed() -> RunRecord:
        final = parent
        async for record in follow_run(probes.store, parent.id, timeout_seconds=60):
            final = record
        return final
    # A follower (the CLI, the UI) settles the run Prefect says crashed; its stage never
    # finished.
    settled = asyncio.run(followed())
    assert settled.state is State.FAILED, settled
    assert settled.stage("child").reason == "Abandoned", settled


@pytest.fixture(scope="module")
def stock_worker(probes: Probes) -> Iterator[PrefectWorker]:
    """Prefect's process worker, as ``SHIPYARD_WORKER=process`` starts it, on a pool of
    its own that the probe's deployments are registered on too."""
    stack = probes.stack
    server = PrefectServer(stack.home / "prefect", int(stack.api_url.rsplit(":", 1)[1]
                                                       .split("/")[0]), "")
    worker = PrefectWorker(server, STOCK_POOL, Path.cwd(),
                           (("SHIPYARD_HOME", str(stack.home)),
                            ("SHIPYARD_DATABASE_URL", stack.store_url)),
                           worker_type="process")
    ensure_work_pool(STOCK_POOL, project_dir=Path.cwd(), pool_type="process",
                     prefect_env=server.env())
    asyncio.run(register_deployments(STOCK_POOL, suffix="-stock"))
    assert worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def test_the_stock_process_worker_still_runs_the_flows_cold(probes: Probes,
                                                            stock_worker: PrefectWorker
                                                            ) -> None:
    parent, child = probes.parent_waiting(f"{PARENT.partition('/')[0]}/"
                                          "judgment-probe-parent-stock")
    pids = flow_processes(str(parent.prefect_flow_run_id))
    assert pids and not any(zygote_of(pid) for pid in pids), "no zygote in the stock path"
    assert child.stage("prepare").outputs["pid"] in pids
    cmdline = Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")
    assert cmdline[:3] == [sys.executable.encode(), b"-m", b"prefect.engine"] or \
        b"prefect.engine" in b" ".join(cmdline)
    done = probes.stack.shipyard("approve", parent.short_id)
    assert done.returncode == 0, done.stderr
    assert probes.settled(parent).state is State.SUCCEEDED
