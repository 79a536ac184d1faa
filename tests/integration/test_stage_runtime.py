"""The ``@stage`` decorator records transitions, attempts, outputs and logs in the store,
with the flow and its tasks run by a real Prefect server."""

from __future__ import annotations

import asyncio
import time

import pytest
from prefect import flow

from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import DeployLocks
from stages.lifecycle import PipelineFailed, begin_run, running
from stages.runtime import StageContext, StageFailure, StageResult, open_store, stage

pytestmark = pytest.mark.integration

attempts_seen: list[int] = []


class Counted(StageResult):
    value: int

    def summary(self) -> str:
        return f"counted {self.value}"


@stage("count")
async def count(ctx: StageContext, upto: int) -> Counted:
    for n in range(upto):
        await ctx.log(f"line {n}")
    return Counted(value=upto)


@stage("flaky", retries=2, retry_delay_seconds=0)
async def flaky(ctx: StageContext, succeed_on: int) -> Counted:
    attempts_seen.append(ctx.attempt)
    if ctx.attempt < succeed_on:
        raise StageFailure("Flaky", f"attempt {ctx.attempt} fails on purpose")
    return Counted(value=ctx.attempt)


@stage("slow", timeout_seconds=1)
async def slow(ctx: StageContext) -> Counted:
    await asyncio.sleep(30)
    return Counted(value=0)


@stage("broken")
async def broken(ctx: StageContext) -> Counted:
    raise StageFailure("Broken", "this stage always fails")


GRAPH = (StageSpec("count"), StageSpec("flaky", ("count",)), StageSpec("slow", ("count",)),
         StageSpec("broken", ("count",)), StageSpec("after-broken", ("broken",)),
         StageSpec("join", ("flaky", "slow")))


@flow(name="stage-runtime-test")
async def exercise(succeed_on: int, with_slow: bool) -> str:
    run = await begin_run("test", GRAPH, run_id=None, trigger="test")
    async with running(run):
        await count(run, 120)
        branches = [flaky(run, succeed_on), broken(run)]
        if with_slow:
            branches.append(slow(run))
        await asyncio.gather(*branches, return_exceptions=True)
    return run.run_id


def run_exercise(succeed_on: int, with_slow: bool = False) -> str:
    with pytest.raises(PipelineFailed) as failed:
        asyncio.run(exercise(succeed_on, with_slow))
    return failed.value.run.id


def test_a_stage_records_its_transitions_outputs_and_logs(prefect_stack):
    run_id = run_exercise(succeed_on=1)
    store = open_store()
    run = store.get_run(run_id)
    counted = run.stage("count")
    assert counted.state is State.SUCCEEDED and counted.message == "counted 120"
    assert counted.outputs == {"value": 120}
    moves = [(t.from_state, t.to_state) for t in store.transitions(run_id)
             if t.stage_ref == "count"]
    assert moves == [(State.QUEUED, State.RUNNING), (State.RUNNING, State.SUCCEEDED)]
    text = "".join(c.text for c in store.read_logs(run_id, "count"))
    assert text.splitlines() == [f"line {n}" for n in range(120)]
    assert run.prefect_flow_run_id is not None


def test_a_retried_stage_counts_attempts_on_the_same_stage(prefect_stack):
    attempts_seen.clear()
    run_id = run_exercise(succeed_on=3)
    flaky_stage = open_store().get_run(run_id).stage("flaky")
    assert attempts_seen == [1, 2, 3]
    assert flaky_stage.state is State.SUCCEEDED and flaky_stage.attempts == 3
    assert flaky_stage.outputs == {"value": 3}


def test_a_stage_failing_every_attempt_fails_with_its_reason(prefect_stack):
    run_id = run_exercise(succeed_on=99)
    run = open_store().get_run(run_id)
    assert run.stage("flaky").state is State.FAILED
    assert run.stage("flaky").reason == "Flaky"
    assert run.stage("flaky").attempts == 3


def test_a_failure_skips_the_stages_that_require_it_and_fails_the_run(prefect_stack):
    run_id = run_exercise(succeed_on=1)
    run = open_store().get_run(run_id)
    assert run.stage("broken").state is State.FAILED and run.stage("broken").reason == "Broken"
    after = run.stage("after-broken")
    assert after.state is State.SKIPPED and after.reason == "RequirementNotMet"
    assert "broken" in after.message
    assert run.state is State.FAILED and "broken Broken" in run.message


def test_a_stage_past_its_timeout_fails_as_timed_out(prefect_stack):
    run_id = run_exercise(succeed_on=1, with_slow=True)
    run = open_store().get_run(run_id)
    slow_stage = run.stage("slow")
    assert slow_stage.state is State.FAILED and slow_stage.reason == "TimedOut"
    assert slow_stage.duration_seconds is not None and slow_stage.duration_seconds < 10
    assert run.stage("join").state is State.SKIPPED


# -- a restart reuses what came before the restart point -----------------------------------

lock_runs: list[str] = []


@stage("lock", reusable=False)
async def lock(ctx: StageContext) -> Counted:
    lock_runs.append(ctx.run_id)
    return Counted(value=len(lock_runs))


CHAIN = (StageSpec("lock"), StageSpec("first", ("lock",)), StageSpec("second", ("first",)),
         StageSpec("third", ("second",)))


@flow(name="restart-test")
async def chain(restart_of: str | None = None, restart_from: str | None = None) -> str:
    run = await begin_run("cd", CHAIN, run_id=None, trigger="test", restart_of=restart_of,
                          restart_from=restart_from)
    async with running(run):
        await lock(run)
        for n, ref in enumerate(("first", "second", "third"), start=1):
            await count(run, n * 10, stage_ref=ref)
    return run.run_id


def test_a_restart_reuses_the_stages_before_its_point_and_runs_the_rest(prefect_stack):
    store = open_store()
    original = asyncio.run(chain())
    again = store.get_run(asyncio.run(chain(restart_of=original, restart_from="second")))
    assert again.restarted_from == original
    before = store.get_run(original)
    reasons = {s.ref: (s.state, s.reason) for s in again.stages}
    assert reasons["first"] == (State.SUCCEEDED, "Reused")
    assert again.stage("first").outputs == before.stage("first").outputs
    assert f"reused from run {before.short_id}" in again.stage("first").message
    assert reasons["second"] == reasons["third"] == (State.SUCCEEDED, "Succeeded")
    assert "".join(c.text for c in store.read_logs(again.id, "second")).count("line") == 20
    # A stage that is not reusable runs in every restart, even before the point.
    assert reasons["lock"] == (State.SUCCEEDED, "Succeeded")
    assert lock_runs[-2:] == [original, again.id]
    # A reused stage went through the table in one write: queued, running, succeeded.
    moves = [(t.from_state, t.to_state, t.reason) for t in store.transitions(again.id)
             if t.stage_ref == "first"]
    assert moves == [(State.QUEUED, State.RUNNING, "Reused"),
                     (State.RUNNING, State.SUCCEEDED, "Reused")]


# -- a delivery takes every deploy lock or none ----------------------------------------------

@stage("plan")
async def planned(ctx: StageContext) -> Counted:
    return Counted(value=1)


@flow(name="locked-delivery-test")
async def locked_delivery() -> str:
    from pipelines.delivery import deliver
    from shipyard.domain.delivery_options import DeliveryOptions
    from stages.releases import ReleasePlan

    run = await begin_run("cd", (StageSpec("plan"),), run_id=None, trigger="test")
    plan = ReleasePlan(app="discovery", environment="staging", version="abc",
                       commit_sha="abc", ci_run_id="r", depends_on=[])
    async with running(run):
        await planned(run)
        await deliver(run, [plan], ["staging", "prod"],
                      DeliveryOptions(canary=False, chaos=False),
                      planned_by={"discovery": "plan"})
    return run.run_id


def test_a_delivery_whose_lock_another_run_holds_waits_its_turn_then_changes_nothing(
        prefect_stack, monkeypatch):
    monkeypatch.setenv("SHIPYARD_LOCK_WAIT_SECONDS", "3")
    store = open_store()
    holder = store.create_run("release", [StageSpec("ci")], trigger="test")
    locks = DeployLocks(store)
    assert locks.acquire("discovery", "prod", holder.id) is None
    try:
        began = time.monotonic()
        with pytest.raises(PipelineFailed) as failed:
            asyncio.run(locked_delivery())
        assert time.monotonic() - began >= 3  # it waited for the holder, then gave up
        run = store.get_run(failed.value.run.id)
        refused = run.stage("locks")
        assert refused.state is State.FAILED and refused.reason == "DeployInProgress"
        assert f"discovery in prod is being deployed by release run {holder.short_id}" in \
            refused.message
        assert "did not end within 3s (SHIPYARD_LOCK_WAIT_SECONDS)" in refused.message
        said = "".join(chunk.text for chunk in store.read_logs(run.id, "locks"))
        assert "waiting for its turn (up to 3s): discovery in prod" in said
        assert run.stage("bake:discovery").state is State.SKIPPED
        assert run.stage("staging:discovery").state is State.SKIPPED
        assert (run.stage("rollback").state, run.stage("rollback").reason) == (
            State.SKIPPED, "WhenNotMet")
        # None taken: staging's lock, which it would have taken first, is free.
        other = store.create_run("release", [StageSpec("ci")], trigger="test")
        assert locks.acquire("discovery", "staging", other.id) is None
        store.cancel_run(other.id, reason="TestOver", message="the test ended")
    finally:
        store.cancel_run(holder.id, reason="TestOver", message="the test ended")
