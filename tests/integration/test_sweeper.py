"""The run sweeper against a real Prefect server and the session's store: runs whose
process died are settled ``Abandoned`` with the evidence, their deploy locks given back
and their flow runs marked crashed; live, paused and suspended ones are left alone.
``shipyard reconcile --dry-run`` says the same and changes nothing.

One sweep serves every case: each run is made in the state a dead (or live) process would
leave, with a real flow run in the state Prefect would show."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Crashed, Paused, Running

from shipyard.domain.clock import FrozenClock
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import DeployLocks, Ledger, Store
from tests.support.prefect_runs import settled_prefect_state
from tests.support.stack import SWEEP_GRACE_SECONDS, Stack

CHAIN = (StageSpec("plan"), StageSpec("deploy", ("plan",)))


@flow(name="sweeper-probe")
def sweeper_probe() -> None:
    """Never run: its flow runs are set by hand to what a dead or live process leaves."""


async def _flow_run(state: object) -> str:
    async with get_client() as client:
        made = await client.create_flow_run(sweeper_probe, name="sweeper-probe")
        await client.set_flow_run_state(made.id, state, force=True)  # type: ignore[arg-type]
        return str(made.id)


async def _delete(flow_run_id: str) -> None:
    async with get_client() as client:
        await client.delete_flow_run(UUID(flow_run_id))


@dataclass(frozen=True)
class Runs:
    quiet: str  # Prefect says RUNNING, the heartbeat stopped 10 minutes ago
    deleted: str  # its flow run was deleted
    crashed: str  # its flow run crashed longer ago than the sweeper's grace
    alive: str  # RUNNING, beating
    paused: str  # waiting for a judgment, flow run paused
    app: str


@pytest.fixture(scope="module")
def runs(prefect_stack: Stack) -> Iterator[Runs]:
    now = datetime.now(UTC)
    store = Store.open(prefect_stack.store_url)
    app = f"sweep{now:%H%M%S}"

    def run(flow_run: str, *, beat_ago: float) -> str:
        record = store.create_run("cd", CHAIN, trigger="test", app=app,
                                  prefect_flow_run_id=flow_run)
        store.transition_stage(record.id, "plan", State.RUNNING, reason="Started")
        Store.open(prefect_stack.store_url,
                   clock=FrozenClock(now - timedelta(seconds=beat_ago))).beat(record.id)
        return record.id

    deleted_flow_run = asyncio.run(_flow_run(Running()))
    made = Runs(
        quiet=run(asyncio.run(_flow_run(Running())), beat_ago=600),
        deleted=run(deleted_flow_run, beat_ago=5),
        crashed=run(asyncio.run(_flow_run(Crashed(message="Process exited with code -9"))),
                    beat_ago=5),
        alive=run(asyncio.run(_flow_run(Running())), beat_ago=0),
        paused=run(asyncio.run(_flow_run(Paused(reschedule=False))), beat_ago=3600),
        app=app)
    store.transition_stage(made.paused, "plan", State.WAITING, reason="AwaitingJudgment")
    asyncio.run(_delete(deleted_flow_run))
    # Prefect dates the crash now: past the grace, the sweeper no longer waits for the
    # flow's own last write.
    time.sleep(SWEEP_GRACE_SECONDS + 0.5)
    locks = DeployLocks(store)
    assert locks.acquire(app, "prod", made.quiet) is None
    yield made
    for leftover in (made.alive, made.paused):  # no later sweep should find them
        store.abandon_run(leftover, evidence="the sweeper test is over")


def test_a_dry_run_names_the_runs_that_lost_their_process_and_changes_nothing(
        prefect_stack: Stack, runs: Runs):
    done = prefect_stack.shipyard("reconcile", "--dry-run", timeout=120)
    assert done.returncode == 0, done.stderr
    for run_id in (runs.quiet, runs.deleted, runs.crashed):
        assert run_id[:8] in done.stdout
    for run_id in (runs.alive, runs.paused):
        assert run_id[:8] not in done.stdout
    assert "would settle as abandoned" in done.stdout
    store = Store.open(prefect_stack.store_url)
    assert store.get_run(runs.quiet).state is State.RUNNING  # nothing changed


def test_reconcile_settles_the_runs_whose_process_died_and_leaves_the_live_ones(
        prefect_stack: Stack, runs: Runs):
    done = prefect_stack.shipyard("reconcile", timeout=120)
    assert done.returncode == 0, done.stderr
    store = Store.open(prefect_stack.store_url)
    quiet, deleted, crashed = (store.get_run(r) for r in (runs.quiet, runs.deleted,
                                                           runs.crashed))
    for settled in (quiet, deleted, crashed):
        assert (settled.state, settled.reason) == (State.FAILED, "Abandoned")
        assert settled.stage("plan").reason == "Abandoned"
        assert settled.stage("deploy").state is State.SKIPPED
    assert "no heartbeat for 10m" in quiet.message and "is RUNNING" in quiet.message
    assert "no longer has its flow run" in deleted.message
    assert "ended CRASHED" in crashed.message and "code -9" in crashed.message
    assert store.get_run(runs.alive).state is State.RUNNING
    assert store.get_run(runs.paused).state is State.WAITING
    # The lock the dead run held is free; Prefect's UI says what the store says.
    assert DeployLocks(store).acquire(runs.app, "prod", runs.alive) is None
    assert quiet.prefect_flow_run_id is not None
    assert settled_prefect_state(quiet.prefect_flow_run_id, seconds=10) == "CRASHED"
    audited = {e.subject_id for e in Ledger(store).audit_trail(subject_kind="run",
                                                               limit=500)
               if e.action == "run.abandoned"}
    assert {runs.quiet, runs.deleted, runs.crashed} <= audited
    # A second sweep finds nothing more of these.
    again = prefect_stack.shipyard("reconcile", "--dry-run", timeout=120)
    assert runs.quiet[:8] not in again.stdout
