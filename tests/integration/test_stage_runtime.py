"""The ``@stage`` decorator records transitions, attempts, outputs and logs in the store,
with the flow and its tasks run by a real Prefect server."""

from __future__ import annotations

import asyncio

import pytest
from prefect import flow

from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
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
