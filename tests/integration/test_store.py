"""The store against real databases: every test runs on SQLite and on PostgreSQL.

PostgreSQL is the stack's (``shipyard up --only postgres``) or ``SHIPYARD_TEST_POSTGRES_URL``;
each test gets a database of its own, created for it and dropped after it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from shipyard.domain.clock import FrozenClock
from shipyard.domain.pipeline import InvalidPipeline, StageSpec
from shipyard.domain.states import State, TransitionForbidden
from shipyard.store import (
    AmbiguousRunId,
    Ledger,
    RunNotFound,
    StageNotFound,
    Store,
    StoreConfigError,
)
from shipyard.store.models import Approval

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32
SHA = "0123456789abcdef0123456789abcdef01234567"

#        checkout
#        /      \
#    test:a    test:b
#        \      /
#         build
#           |
#         deploy
DIAMOND = (
    StageSpec("checkout"),
    StageSpec("test:a", ("checkout",), "test app a"),
    StageSpec("test:b", ("checkout",)),
    StageSpec("build", ("test:a", "test:b")),
    StageSpec("deploy", ("build",)),
)

@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def store(store_url: str, clock: FrozenClock) -> Iterator[Store]:
    opened = Store.open(store_url, clock=clock)
    yield opened
    opened.close()


@pytest.fixture
def ledger(store: Store) -> Ledger:
    return Ledger(store)


def diamond_run(store: Store, *, app: str | None = None) -> str:
    """A new ci run over :data:`DIAMOND`; its id."""
    return store.create_run("ci", DIAMOND, trigger="manual", app=app).id


def succeed(store: Store, run_id: str, *refs: str) -> None:
    for ref in refs:
        store.transition_stage(run_id, ref, State.RUNNING, reason="Started")
        store.transition_stage(run_id, ref, State.SUCCEEDED, reason="Succeeded")


def states(store: Store, run_id: str) -> dict[str, State]:
    return {s.ref: s.state for s in store.get_run(run_id).stages}


# -- creating and finding runs ------------------------------------------------------------


def test_a_created_run_is_queued_with_its_stages_in_order(store: Store) -> None:
    run = store.create_run("ci", DIAMOND, trigger="webhook", actor="alice", app="gateway",
                           repo_url="https://git.example/gateway.git", ref="main",
                           parameters={"apps": ["gateway"]})

    assert (run.pipeline, run.trigger, run.actor, run.app, run.ref) == (
        "ci", "webhook", "alice", "gateway", "main")
    assert run.repo_url == "https://git.example/gateway.git"
    assert run.parameters == {"apps": ["gateway"]}
    assert (run.state, run.reason, run.message) == (
        State.QUEUED, "Created", "ci run created by webhook")
    assert run.created_at == START
    assert (run.started_at, run.finished_at, run.commit_sha) == (None, None, None)
    assert [s.spec for s in run.stages] == [
        StageSpec(s.ref, s.requires, s.title) for s in DIAMOND]
    assert run.stage("test:a").name == "test app a"
    assert {(s.state, s.reason, s.attempts) for s in run.stages} == {
        (State.QUEUED, "Created", 0)}


def test_a_new_run_has_one_transition_into_queued(store: Store) -> None:
    run_id = diamond_run(store)

    [created] = store.transitions(run_id)

    assert (created.stage_ref, created.from_state, created.to_state, created.reason) == (
        "", None, State.QUEUED, "Created")
    assert created.at == START


def test_runs_get_distinct_32_character_hex_ids(store: Store) -> None:
    ids = {diamond_run(store) for _ in range(3)}
    assert len(ids) == 3
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)


def test_an_invalid_stage_graph_is_refused_and_no_run_is_written(store: Store) -> None:
    with pytest.raises(InvalidPipeline, match="'nope'"):
        store.create_run("ci", [StageSpec("build", ("nope",))], trigger="manual")
    assert store.list_runs() == []


def test_a_run_is_found_by_a_prefix_of_four_or_more_characters(store: Store) -> None:
    run_id = diamond_run(store)

    for length in (4, 8, 31, 32):
        assert store.get_run(run_id[:length]).id == run_id
    assert store.get_run(run_id[:6].upper()).id == run_id


@pytest.mark.parametrize("length", [0, 1, 3])
def test_a_prefix_shorter_than_four_characters_finds_nothing(store: Store,
                                                             length: int) -> None:
    run_id = diamond_run(store)
    with pytest.raises(RunNotFound):
        store.get_run(run_id[:length])


@pytest.mark.parametrize("pattern", ["____", "%%%%", "%", "____%"])
def test_sql_wildcards_are_not_prefixes(store: Store, pattern: str) -> None:
    diamond_run(store)
    with pytest.raises(RunNotFound):
        store.get_run(pattern)


def test_an_unknown_id_raises_run_not_found_saying_where_to_look(store: Store) -> None:
    diamond_run(store)

    with pytest.raises(RunNotFound) as raised:
        store.get_run("feedface")

    assert str(raised.value) == "no run matches 'feedface'; `shipyard runs` lists recent runs"
    assert raised.value.run_id == "feedface"
    assert isinstance(raised.value, LookupError)


@pytest.mark.parametrize("read", ["get_run", "transitions", "read_logs"])
def test_every_read_of_an_unknown_run_raises_run_not_found(store: Store, read: str) -> None:
    with pytest.raises(RunNotFound):
        getattr(store, read)("0" * 32)


def test_a_prefix_shared_by_several_runs_is_ambiguous(store: Store,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ids = iter(["abcd1111" + "0" * 24, "abcd2222" + "0" * 24, "ffff0000" + "0" * 24])
    monkeypatch.setattr("shipyard.store.store.uuid",
                        SimpleNamespace(uuid4=lambda: SimpleNamespace(hex=next(ids))))
    for _ in range(3):
        diamond_run(store)

    with pytest.raises(AmbiguousRunId) as raised:
        store.get_run("abcd")

    assert str(raised.value) == (
        "run id 'abcd' matches several runs (abcd11110000, abcd22220000); "
        "give more characters")
    assert store.get_run("abcd2").id.startswith("abcd2222")


def test_runs_are_listed_newest_first_without_stages(store: Store, clock: FrozenClock) -> None:
    first = diamond_run(store)
    clock.advance(1)
    second = diamond_run(store)
    clock.advance(1)
    third = diamond_run(store)

    listed = store.list_runs()

    assert [r.id for r in listed] == [third, second, first]
    assert all(r.stages == () for r in listed)
    assert [r.id for r in store.list_runs(limit=2)] == [third, second]


def test_runs_are_listed_by_pipeline_app_and_state(store: Store, clock: FrozenClock) -> None:
    ci_gateway = diamond_run(store, app="gateway")
    clock.advance(1)
    ci_auth = diamond_run(store, app="auth")
    clock.advance(1)
    cd_gateway = store.create_run("cd", [StageSpec("plan")], trigger="manual",
                                  app="gateway").id
    store.transition_stage(ci_auth, "checkout", State.RUNNING, reason="Started")

    def listed(**filters: Any) -> list[str]:
        return [r.id for r in store.list_runs(**filters)]

    assert listed(pipeline="ci") == [ci_auth, ci_gateway]
    assert listed(app="gateway") == [cd_gateway, ci_gateway]
    assert listed(pipeline="ci", app="gateway") == [ci_gateway]
    assert listed(state=State.RUNNING) == [ci_auth]
    assert listed(state=State.QUEUED) == [cd_gateway, ci_gateway]
    assert listed(pipeline="rollback") == []


def test_stages_added_later_join_the_graph_after_the_first_ones(store: Store) -> None:
    run_id = store.create_run("ci", [StageSpec("checkout")], trigger="manual").id

    run = store.add_stages(run_id[:8], [StageSpec("test:a", ("checkout",)),
                                        StageSpec("test:b", ("checkout",))])

    assert [s.ref for s in run.stages] == ["checkout", "test:a", "test:b"]
    assert run.stage("test:b").state is State.QUEUED


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([StageSpec("checkout")], "'checkout' appears twice"),
        ([StageSpec("test", ("nope",))], "requires 'nope'"),
    ],
)
def test_added_stages_that_break_the_graph_are_refused_and_not_written(
    store: Store, extra: list[StageSpec], message: str
) -> None:
    run_id = store.create_run("ci", [StageSpec("checkout")], trigger="manual").id

    with pytest.raises(InvalidPipeline, match=message):
        store.add_stages(run_id, extra)

    assert [s.ref for s in store.get_run(run_id).stages] == ["checkout"]


def test_the_commit_and_the_flow_run_are_remembered(store: Store) -> None:
    run_id = diamond_run(store)
    flow_run_id = str(uuid.uuid4())

    store.record_commit(run_id, SHA)
    store.link_flow_run(run_id[:10], flow_run_id)

    run = store.get_run(run_id)
    assert (run.commit_sha, run.prefect_flow_run_id) == (SHA, flow_run_id)


@pytest.mark.parametrize("sha", ["main", SHA[:12], SHA.upper(), SHA + "0", ""])
def test_a_commit_that_is_not_a_full_sha_is_refused(store: Store, sha: str) -> None:
    run_id = diamond_run(store)
    with pytest.raises(ValueError, match="not a full hexadecimal git sha"):
        store.record_commit(run_id, sha)
    assert store.get_run(run_id).commit_sha is None


# -- stage transitions --------------------------------------------------------------------


def test_the_first_stage_starting_starts_the_run(store: Store, clock: FrozenClock) -> None:
    run_id = diamond_run(store)
    clock.advance(5)

    run = store.transition_stage(run_id, "checkout", State.RUNNING, reason="Started",
                                 message="cloning")

    checkout = run.stage("checkout")
    assert (checkout.state, checkout.reason, checkout.message) == (
        State.RUNNING, "Started", "cloning")
    assert (checkout.attempts, checkout.started_at, checkout.finished_at) == (1, clock(), None)
    assert (run.state, run.reason, run.started_at) == (State.RUNNING, "StageStarted", clock())
    assert [(t.stage_ref, t.from_state, t.to_state, t.reason)
            for t in store.transitions(run_id)] == [
        ("", None, State.QUEUED, "Created"),
        ("checkout", State.QUEUED, State.RUNNING, "Started"),
        ("", State.QUEUED, State.RUNNING, "StageStarted"),
    ]


def test_a_finished_stage_records_when_and_its_outputs(store: Store, clock: FrozenClock) -> None:
    run_id = diamond_run(store)
    store.transition_stage(run_id, "checkout", State.RUNNING, reason="Started",
                           outputs={"workspace": "/w/1"})
    clock.advance(42.5)

    run = store.transition_stage(run_id, "checkout", State.SUCCEEDED, reason="CheckedOut",
                                 message="at 0123abc", outputs={"commit": SHA})

    checkout = run.stage("checkout")
    assert checkout.outputs == {"workspace": "/w/1", "commit": SHA}
    assert checkout.finished_at == clock()
    assert checkout.duration_seconds == 42.5
    assert run.state is State.RUNNING  # other stages remain


@pytest.mark.parametrize(
    ("setup", "ref", "target"),
    [
        ([], "checkout", State.SUCCEEDED),  # queued cannot succeed without running
        ([], "checkout", State.WAITING),
        ([("checkout", State.RUNNING), ("checkout", State.SUCCEEDED)], "checkout",
         State.RUNNING),  # no going back
        ([("checkout", State.SKIPPED)], "checkout", State.QUEUED),
    ],
)
def test_a_forbidden_stage_move_raises_and_writes_nothing(
    store: Store, clock: FrozenClock, setup: list[tuple[str, State]], ref: str, target: State
) -> None:
    run_id = diamond_run(store)
    for setup_ref, setup_state in setup:
        store.transition_stage(run_id, setup_ref, setup_state, reason="Setup")
    before = store.get_run(run_id)
    written = len(store.transitions(run_id))
    clock.advance(60)

    with pytest.raises(TransitionForbidden) as raised:
        store.transition_stage(run_id, ref, target, reason="Moved", message="should not stick",
                               outputs={"leaked": True})

    assert f"stage {ref!r} of run {run_id[:8]} cannot go from" in str(raised.value)
    assert len(store.transitions(run_id)) == written
    assert store.get_run(run_id) == before


def test_a_malformed_reason_is_refused_and_writes_nothing(store: Store) -> None:
    run_id = diamond_run(store)

    with pytest.raises(ValueError, match="CamelCase"):
        store.transition_stage(run_id, "checkout", State.RUNNING, reason="started")

    assert store.get_run(run_id).stage("checkout").state is State.QUEUED
    assert store.get_run(run_id).state is State.QUEUED
    assert len(store.transitions(run_id)) == 1


def test_an_unknown_stage_is_named_with_the_stages_the_run_has(store: Store) -> None:
    run_id = diamond_run(store)

    with pytest.raises(StageNotFound) as raised:
        store.transition_stage(run_id, "lint", State.RUNNING, reason="Started")

    assert str(raised.value) == (
        f"run {run_id[:8]} has no stage 'lint'; its stages are: "
        "checkout, test:a, test:b, build, deploy")


def test_a_failed_stage_skips_its_dependents_transitively_naming_the_blocker(
    store: Store, clock: FrozenClock
) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, "checkout")
    store.transition_stage(run_id, "test:b", State.RUNNING, reason="Started")
    store.transition_stage(run_id, "test:a", State.RUNNING, reason="Started")
    clock.advance(3)

    run = store.transition_stage(run_id, "test:a", State.FAILED, reason="TestsFailed",
                                 message="2 failed")

    assert states(store, run_id) == {
        "checkout": State.SUCCEEDED, "test:a": State.FAILED, "test:b": State.RUNNING,
        "build": State.SKIPPED, "deploy": State.SKIPPED,
    }
    build, deploy = run.stage("build"), run.stage("deploy")
    assert (build.reason, build.message) == (
        "RequirementNotMet", "skipped because requirement 'test:a' failed")
    assert (deploy.reason, deploy.message) == (
        "RequirementNotMet", "skipped because requirement 'build' skipped")
    assert build.finished_at == deploy.finished_at == clock()
    assert run.state is State.RUNNING  # test:b is still running
    assert [(t.stage_ref, t.to_state) for t in store.transitions(run_id)[-3:]] == [
        ("test:a", State.FAILED), ("build", State.SKIPPED), ("deploy", State.SKIPPED)]


def test_skipping_a_stage_skips_its_dependents_too(store: Store) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, "checkout", "test:a", "test:b")

    store.transition_stage(run_id, "build", State.SKIPPED, reason="ConditionFalse",
                           message="only on main")

    run = store.get_run(run_id)
    assert run.stage("build").reason == "ConditionFalse"
    assert run.stage("deploy").state is State.SKIPPED
    assert run.stage("deploy").message == "skipped because requirement 'build' skipped"


def test_a_success_skips_nothing(store: Store) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, "checkout", "test:a")
    assert states(store, run_id)["build"] is State.QUEUED


def test_a_waiting_stage_makes_the_run_wait_until_every_judgment_is_answered(
    store: Store,
) -> None:
    run_id = store.create_run("promote", [StageSpec("judge:qa"), StageSpec("judge:ops")],
                              trigger="manual").id
    for ref in ("judge:qa", "judge:ops"):
        store.transition_stage(run_id, ref, State.RUNNING, reason="Started")
        run = store.transition_stage(run_id, ref, State.WAITING, reason="AwaitingApproval")
    assert (run.state, run.reason) == (State.WAITING, "AwaitingJudgment")

    run = store.transition_stage(run_id, "judge:qa", State.RUNNING, reason="Approved")
    assert run.state is State.WAITING  # ops has not answered

    run = store.transition_stage(run_id, "judge:ops", State.FAILED, reason="Rejected")
    assert (run.state, run.reason) == (State.RUNNING, "JudgmentAnswered")
    assert run.stage("judge:qa").attempts == 1  # answering a judgment is not a new attempt


def test_a_retry_counts_an_attempt_without_a_transition(store: Store) -> None:
    run_id = diamond_run(store)
    store.transition_stage(run_id, "checkout", State.RUNNING, reason="Started")
    written = len(store.transitions(run_id))

    store.record_attempt(run_id, "checkout", "attempt 1 of 3 failed; retrying")
    store.record_attempt(run_id, "checkout", "attempt 2 of 3 failed; retrying")

    checkout = store.get_run(run_id).stage("checkout")
    assert (checkout.state, checkout.attempts, checkout.message) == (
        State.RUNNING, 3, "attempt 2 of 3 failed; retrying")
    assert len(store.transitions(run_id)) == written


# -- the run itself -----------------------------------------------------------------------


def test_cancelling_a_run_cancels_every_unfinished_stage(store: Store, clock: FrozenClock) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, "checkout")
    store.transition_stage(run_id, "test:a", State.RUNNING, reason="Started")
    store.transition_stage(run_id, "test:b", State.RUNNING, reason="Started")
    store.transition_stage(run_id, "test:b", State.WAITING, reason="AwaitingApproval")
    clock.advance(9)

    run = store.transition_run(run_id, State.CANCELLED, reason="CancelledByUser",
                               message="cancelled by alice")

    assert (run.state, run.reason, run.finished_at) == (
        State.CANCELLED, "CancelledByUser", clock())
    assert states(store, run_id) == {
        "checkout": State.SUCCEEDED, "test:a": State.CANCELLED, "test:b": State.CANCELLED,
        "build": State.CANCELLED, "deploy": State.CANCELLED,
    }
    cancelled = [s for s in run.stages if s.state is State.CANCELLED]
    assert {(s.reason, s.message, s.finished_at) for s in cancelled} == {
        ("RunCancelled", "cancelled by alice", clock())}
    assert [(t.stage_ref, t.from_state) for t in store.transitions(run_id)[-5:]] == [
        ("", State.WAITING), ("test:a", State.RUNNING), ("test:b", State.WAITING),
        ("build", State.QUEUED), ("deploy", State.QUEUED)]


def test_a_cancellation_without_a_message_says_the_run_was_cancelled(store: Store) -> None:
    run_id = diamond_run(store)
    run = store.transition_run(run_id, State.CANCELLED, reason="FlowCancelled")
    assert run.stage("checkout").message == "the run was cancelled"


def test_a_finished_run_cannot_be_cancelled_and_nothing_is_written(store: Store) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, *(s.ref for s in DIAMOND))
    store.finish_run(run_id)
    before, written = store.get_run(run_id), len(store.transitions(run_id))

    with pytest.raises(TransitionForbidden, match=rf"run {run_id[:8]} cannot go from "
                                                  "succeeded to cancelled"):
        store.transition_run(run_id, State.CANCELLED, reason="CancelledByUser")

    assert store.get_run(run_id) == before
    assert len(store.transitions(run_id)) == written


def test_a_run_whose_stages_all_succeeded_succeeds(store: Store, clock: FrozenClock) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, *(s.ref for s in DIAMOND))
    clock.advance(100)

    run = store.finish_run(run_id)

    assert (run.state, run.reason, run.finished_at) == (State.SUCCEEDED, "Succeeded", clock())
    assert run.duration_seconds == 100


def test_a_run_with_a_failed_stage_fails_naming_it(store: Store) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, "checkout", "test:b")
    store.transition_stage(run_id, "test:a", State.RUNNING, reason="Started")
    store.transition_stage(run_id, "test:a", State.FAILED, reason="TestsFailed",
                           message="2 failed, 9 passed")

    run = store.finish_run(run_id)

    assert (run.state, run.reason, run.message) == (
        State.FAILED, "StageFailed", "failed: test:a TestsFailed: 2 failed, 9 passed")


def test_a_run_with_a_rolled_back_deploy_is_rolled_back(store: Store) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, *(s.ref for s in DIAMOND))
    store.transition_stage(run_id, "deploy", State.ROLLED_BACK, reason="RolledBack")

    run = store.finish_run(run_id)

    assert (run.state, run.message) == (State.ROLLED_BACK, "rolled back stages: deploy")


def test_unfinished_stages_are_abandoned_when_the_pipeline_ends(store: Store) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, "checkout")
    store.transition_stage(run_id, "test:a", State.RUNNING, reason="Started")
    store.transition_stage(run_id, "test:b", State.RUNNING, reason="Started")
    store.transition_stage(run_id, "test:b", State.WAITING, reason="AwaitingApproval")

    run = store.finish_run(run_id)

    assert states(store, run_id) == {
        "checkout": State.SUCCEEDED, "test:a": State.FAILED, "test:b": State.FAILED,
        "build": State.SKIPPED, "deploy": State.SKIPPED,
    }
    assert {s.reason for s in run.stages[1:]} == {"Abandoned"}
    assert (run.state, run.reason) == (State.FAILED, "StageFailed")
    assert "test:a Abandoned" in run.message
    assert "test:b Abandoned" in run.message


def test_a_pipeline_that_ends_before_starting_its_stages_does_not_succeed(
    store: Store,
) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, "checkout", "test:a", "test:b")

    run = store.finish_run(run_id)

    assert run.stage("build").state is State.SKIPPED
    assert run.stage("build").reason == "Abandoned"
    assert run.state is State.FAILED
    assert run.reason == "Abandoned"
    assert "build, deploy" in run.message


def test_a_run_that_never_started_is_started_and_then_finished(store: Store) -> None:
    run_id = store.create_run("promote", [StageSpec("promote")], trigger="manual").id

    run = store.finish_run(run_id, error="ValueError: no such release")

    assert [(t.stage_ref, t.to_state, t.reason) for t in store.transitions(run_id)] == [
        ("", State.QUEUED, "Created"),
        ("", State.RUNNING, "Started"),
        ("promote", State.SKIPPED, "Abandoned"),
        ("", State.FAILED, "PipelineError"),
    ]
    assert run.message == "ValueError: no such release"


def test_a_pipeline_error_fails_a_run_whose_stages_succeeded(store: Store) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, *(s.ref for s in DIAMOND))

    run = store.finish_run(run_id, error="KeyError: 'workspace'")

    assert (run.state, run.reason, run.message) == (
        State.FAILED, "PipelineError", "KeyError: 'workspace'")


def test_a_stage_failure_outranks_a_pipeline_error_as_the_reason(store: Store) -> None:
    run_id = diamond_run(store)
    store.transition_stage(run_id, "checkout", State.RUNNING, reason="Started")
    store.transition_stage(run_id, "checkout", State.FAILED, reason="CloneFailed")

    run = store.finish_run(run_id, error="PipelineFailed: checkout failed")

    assert (run.state, run.reason) == (State.FAILED, "StageFailed")


def test_finishing_a_finished_run_changes_nothing(store: Store, clock: FrozenClock) -> None:
    run_id = diamond_run(store)
    succeed(store, run_id, *(s.ref for s in DIAMOND))
    finished = store.finish_run(run_id)
    written = len(store.transitions(run_id))
    clock.advance(10)

    again = store.finish_run(run_id, error="late error")

    assert again == finished
    assert len(store.transitions(run_id)) == written


# -- logs ---------------------------------------------------------------------------------


def test_logs_are_read_back_in_order_across_stages(store: Store, clock: FrozenClock) -> None:
    run_id = diamond_run(store)
    store.append_log(run_id, "checkout", "cloning\n")
    clock.advance(1)
    store.append_log(run_id, "test:a", "collected 3 items\n")
    store.append_log(run_id, "checkout", "warning: shallow\n", stream="stderr")
    store.append_log(run_id, "checkout", "")  # nothing to write

    chunks = store.read_logs(run_id)

    assert [(c.stage_ref, c.stream, c.text) for c in chunks] == [
        ("checkout", "stdout", "cloning\n"),
        ("test:a", "stdout", "collected 3 items\n"),
        ("checkout", "stderr", "warning: shallow\n"),
    ]
    assert [c.at for c in chunks] == [START, clock(), clock()]
    assert chunks[0].id < chunks[1].id < chunks[2].id


def test_logs_are_followed_from_the_last_id_seen(store: Store) -> None:
    run_id = diamond_run(store)
    store.append_log(run_id, "checkout", "one\n")
    store.append_log(run_id, "checkout", "two\n")
    last_seen = store.read_logs(run_id)[-1].id

    assert store.read_logs(run_id, after_id=last_seen) == []
    store.append_log(run_id, "checkout", "three\n")
    assert [c.text for c in store.read_logs(run_id, after_id=last_seen)] == ["three\n"]


def test_logs_are_read_for_one_stage(store: Store) -> None:
    run_id = diamond_run(store)
    store.append_log(run_id, "checkout", "a\n")
    store.append_log(run_id, "test:a", "b\n")

    assert [c.text for c in store.read_logs(run_id[:8], "test:a")] == ["b\n"]
    with pytest.raises(StageNotFound, match="no stage 'lint'"):
        store.read_logs(run_id, "lint")


def test_logs_of_another_run_are_not_mixed_in(store: Store) -> None:
    mine, theirs = diamond_run(store), diamond_run(store)
    store.append_log(theirs, "checkout", "theirs\n")
    store.append_log(mine, "checkout", "mine\n")

    assert [c.text for c in store.read_logs(mine)] == ["mine\n"]


def test_a_log_is_appended_by_run_id_prefix(store: Store) -> None:
    run_id = diamond_run(store)

    store.append_log(run_id[:8], "checkout", "by prefix\n")

    assert [c.text for c in store.read_logs(run_id)] == ["by prefix\n"]


def test_a_log_for_an_unknown_stage_or_run_is_refused(store: Store) -> None:
    run_id = diamond_run(store)
    with pytest.raises(StageNotFound, match="no stage 'lint'"):
        store.append_log(run_id, "lint", "x\n")
    with pytest.raises(RunNotFound):
        store.append_log("0" * 32, "checkout", "x\n")
    assert store.read_logs(run_id) == []


def test_logs_are_read_a_page_at_a_time(store: Store) -> None:
    run_id = diamond_run(store)
    for n in range(5):
        store.append_log(run_id, "checkout", f"{n}\n")

    first = store.read_logs(run_id, limit=2)
    second = store.read_logs(run_id, after_id=first[-1].id, limit=2)
    last = store.read_logs(run_id, after_id=second[-1].id, limit=2)

    assert [c.text for c in (*first, *second, *last)] == ["0\n", "1\n", "2\n", "3\n", "4\n"]
    assert len(last) == 1


# -- the per-stage log cap ----------------------------------------------------------------

CAP = 100
FULL_LOG = "/home/shipyard/logs/run/checkout.log"


@pytest.fixture
def capped(store: Store) -> Store:
    """The same database, each stage's log capped at :data:`CAP` lines."""
    return Store(store.engine, clock=store.clock, log_max_lines=CAP)


def numbered(start: int, stop: int) -> str:
    return "".join(f"line {n}\n" for n in range(start, stop))


def test_a_log_under_the_cap_is_kept_whole(capped: Store) -> None:
    run_id = diamond_run(capped)

    dropped = capped.append_log(run_id, "checkout", numbered(0, CAP), full_log=FULL_LOG)

    assert dropped == 0
    assert "".join(c.text for c in capped.read_logs(run_id)) == numbered(0, CAP)
    stage = capped.get_run(run_id).stage("checkout")
    assert (stage.log_lines, stage.log_lines_dropped) == (CAP, 0)


def test_past_the_cap_a_marker_says_how_many_lines_were_dropped_and_where_they_are(
    capped: Store,
) -> None:
    run_id = diamond_run(capped)
    capped.append_log(run_id, "checkout", numbered(0, 60), full_log=FULL_LOG)

    dropped = capped.append_log(run_id, "checkout", numbered(60, 130), full_log=FULL_LOG)

    chunks = capped.read_logs(run_id)
    assert dropped == 30
    assert "".join(c.text for c in chunks[:-1]) == numbered(0, CAP)
    assert (chunks[-1].stream, chunks[-1].text) == (
        "truncated", f"truncated: 30 lines dropped; the full log is in {FULL_LOG}\n")


def test_the_marker_is_kept_current_rather_than_repeated(capped: Store,
                                                          clock: FrozenClock) -> None:
    run_id = diamond_run(capped)
    capped.append_log(run_id, "checkout", numbered(0, 101), full_log=FULL_LOG)
    clock.advance(5)

    for start in range(101, 1101, 50):
        capped.append_log(run_id, "checkout", numbered(start, start + 50), full_log=FULL_LOG)

    chunks = capped.read_logs(run_id)
    markers = [c for c in chunks if c.stream == "truncated"]
    assert [(m.text, m.at) for m in markers] == [
        (f"truncated: 1001 lines dropped; the full log is in {FULL_LOG}\n", clock())]
    assert chunks[-1] == markers[0]
    assert "".join(c.text for c in chunks[:-1]) == numbered(0, CAP)
    stage = capped.get_run(run_id).stage("checkout")
    assert (stage.log_lines, stage.log_lines_dropped) == (CAP, 1001)


def test_each_stage_has_a_cap_of_its_own(capped: Store) -> None:
    run_id = diamond_run(capped)
    capped.append_log(run_id, "checkout", numbered(0, 150), full_log=FULL_LOG)

    assert capped.append_log(run_id, "test:a", numbered(0, CAP)) == 0

    assert "".join(c.text for c in capped.read_logs(run_id, "test:a")) == numbered(0, CAP)


def test_a_log_dropped_without_a_full_copy_says_none_was_kept(capped: Store) -> None:
    run_id = diamond_run(capped)

    capped.append_log(run_id, "checkout", numbered(0, CAP + 1))

    assert capped.read_logs(run_id)[-1].text == (
        "truncated: 1 line dropped; no full log was kept of this stage\n")


def test_a_store_without_a_cap_keeps_every_line(store: Store) -> None:
    run_id = diamond_run(store)

    assert store.append_log(run_id, "checkout", numbered(0, 5 * CAP)) == 0

    assert "".join(c.text for c in store.read_logs(run_id)) == numbered(0, 5 * CAP)


# -- the ledger ---------------------------------------------------------------------------


def test_artifacts_are_recorded_and_listed_newest_first(store: Store, ledger: Ledger) -> None:
    run_id = diamond_run(store, app="gateway")
    other = diamond_run(store, app="auth")

    first = ledger.record_artifact(run_id=run_id, stage_ref="build", app="gateway",
                                   name="registry.local/gateway", digest=DIGEST, tag="1.0",
                                   commit_sha=SHA)
    second = ledger.record_artifact(run_id=other, stage_ref="build", app="auth",
                                    name="registry.local/auth", digest=DIGEST)

    assert (first.run_id, first.app, first.kind, first.name, first.tag, first.digest) == (
        run_id, "gateway", "image", "registry.local/gateway", "1.0", DIGEST)
    assert (first.commit_sha, first.created_at) == (SHA, START)
    assert ledger.artifacts() == [second, first]
    assert ledger.artifacts(app="gateway") == [first]
    assert ledger.artifacts(run_id=other) == [second]
    assert ledger.artifacts(limit=1) == [second]


@pytest.mark.parametrize("digest", ["ab" * 32, "sha256:" + "ab" * 31, "sha512:" + "ab" * 32,
                                    "sha256:" + "zz" * 32])
def test_an_artifact_digest_must_be_sha256_hex(store: Store, ledger: Ledger,
                                               digest: str) -> None:
    run_id = diamond_run(store)
    with pytest.raises(ValueError, match="must be 'sha256:' and 64 hex digits"):
        ledger.record_artifact(run_id=run_id, stage_ref="build", app="gateway", name="x",
                               digest=digest)
    assert ledger.artifacts() == []


def test_the_current_release_is_the_newest_in_that_environment(
    store: Store, ledger: Ledger, clock: FrozenClock
) -> None:
    run_id = diamond_run(store)
    v1 = ledger.record_release(app="gateway", version="1.0", environment="staging",
                               kind="deploy", digest=DIGEST, actor="ci", why="release",
                               manifests="kind: Deployment", run_id=run_id)
    clock.advance(1)
    prod = ledger.record_release(app="gateway", version="1.0", environment="prod",
                                 kind="promote", digest=DIGEST, actor="bob", why="green",
                                 source_release_id=v1.id)
    v2 = ledger.record_release(app="gateway", version="2.0", environment="staging",
                               kind="deploy", digest=DIGEST, actor="ci", why="release")
    rollback = ledger.record_release(app="gateway", version="1.0", environment="staging",
                                     kind="rollback", digest=DIGEST, actor="alice",
                                     why="2.0 errors", source_release_id=v1.id)

    assert ledger.current_release("gateway", "staging") == rollback
    assert ledger.current_release("gateway", "prod") == prod
    assert ledger.current_release("gateway", "dev") is None
    assert ledger.current_release("auth", "staging") is None
    assert ledger.releases("gateway", "staging") == [rollback, v2, v1]
    assert ledger.releases("gateway") == [rollback, v2, prod, v1]
    assert ledger.release(v1.id) == v1
    assert (v1.manifests, v1.run_id, v1.created_at) == ("kind: Deployment", run_id, START)
    assert (rollback.source_release_id, rollback.actor, rollback.why) == (
        v1.id, "alice", "2.0 errors")


def test_an_unknown_release_is_a_lookup_error(ledger: Ledger) -> None:
    with pytest.raises(LookupError, match="no release #999"):
        ledger.release(999)


@pytest.mark.parametrize(
    ("kind", "actor", "message"),
    [("redeploy", "ci", "release kind 'redeploy' must be one of deploy, promote, rollback"),
     ("deploy", "", "a release needs an actor")],
)
def test_a_release_needs_a_known_kind_and_an_actor(ledger: Ledger, kind: str, actor: str,
                                                   message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ledger.record_release(app="gateway", version="1", environment="staging", kind=kind,
                              digest=DIGEST, actor=actor, why="")
    assert ledger.releases("gateway") == []


def test_approvals_are_recorded_with_who_and_when(store: Store, ledger: Ledger) -> None:
    run_id = diamond_run(store)

    ledger.record_approval(run_id=run_id, stage_ref="deploy", decision="approved",
                           actor="carol", comment="ship it")
    ledger.record_approval(run_id=run_id, stage_ref="deploy", decision="rejected",
                           actor="dave")

    with store.reading() as session:
        rows = session.scalars(select(Approval).order_by(Approval.id)).all()
        recorded = [(a.run_id, a.stage_ref, a.decision, a.actor, a.comment, a.at)
                    for a in rows]
    assert recorded == [(run_id, "deploy", "approved", "carol", "ship it", START),
                        (run_id, "deploy", "rejected", "dave", "", START)]


def test_an_approval_must_approve_or_reject(store: Store, ledger: Ledger) -> None:
    run_id = diamond_run(store)
    with pytest.raises(ValueError, match="decision 'maybe' must be 'approved' or 'rejected'"):
        ledger.record_approval(run_id=run_id, stage_ref="deploy", decision="maybe",
                               actor="carol")
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(Approval)) == 0


def test_a_redelivered_webhook_returns_the_first_record(store: Store, ledger: Ledger,
                                                        clock: FrozenClock) -> None:
    run_id = diamond_run(store)
    first, new = ledger.record_delivery(delivery_id="d-1", event="push", outcome="accepted",
                                        detail="ci run started", run_id=run_id)
    assert new is True
    clock.advance(30)

    again, new_again = ledger.record_delivery(delivery_id="d-1", event="push",
                                              outcome="ignored", detail="redelivery")

    assert new_again is False
    assert again == first
    assert (again.outcome, again.run_id, again.received_at) == ("accepted", run_id, START)


def test_distinct_deliveries_are_each_new(ledger: Ledger) -> None:
    results = [ledger.record_delivery(delivery_id=f"d-{i}", event="push", outcome="ignored")
               for i in range(3)]
    assert [new for _, new in results] == [True, True, True]


CI_STAGES = (StageSpec("checkout"),)


def accept(ledger: Ledger, delivery_id: str = "d-1", **fields: Any):
    return ledger.accept_delivery(
        delivery_id=delivery_id, event="push", detail="branch 'main' matches",
        pipeline="ci", stages=CI_STAGES, trigger="push", actor="octocat",
        repo_url="https://example.com/acme/shop.git", ref="main", commit_sha=SHA,
        parameters={"repo": "https://example.com/acme/shop.git", "ref": SHA}, **fields)


def test_an_accepted_delivery_records_its_queued_run_with_it(store: Store,
                                                              ledger: Ledger) -> None:
    delivery, new = accept(ledger)

    assert new is True
    assert (delivery.delivery_id, delivery.outcome, delivery.received_at) == (
        "d-1", "accepted", START)
    run = store.get_run(str(delivery.run_id))
    assert (run.pipeline, run.state, run.trigger, run.actor, run.ref, run.commit_sha) == (
        "ci", State.QUEUED, "push", "octocat", "main", SHA)
    assert run.parameters == {"repo": "https://example.com/acme/shop.git", "ref": SHA}
    assert [s.ref for s in run.stages] == ["checkout"]


def test_a_redelivered_push_answers_the_first_run_and_records_no_other(
        store: Store, ledger: Ledger) -> None:
    first, _ = accept(ledger)
    # The second copy inserts its run and its delivery too; the delivery id refuses it,
    # and its run goes with it.
    again, new = accept(ledger)
    assert new is False
    assert again == first
    assert [r.id for r in store.list_runs()] == [first.run_id]


def test_simultaneous_copies_of_a_delivery_record_one_run(store: Store,
                                                          ledger: Ledger) -> None:
    copies = 10
    barrier = threading.Barrier(copies)

    def deliver(_: int):
        barrier.wait()
        return accept(ledger)

    with ThreadPoolExecutor(copies) as pool:
        results = list(pool.map(deliver, range(copies)))

    assert sum(new for _, new in results) == 1
    assert len({d.run_id for d, _ in results}) == 1
    assert len(store.list_runs(limit=100)) == 1


def test_runs_awaiting_hand_over_are_the_queued_ones_no_flow_run_took(
        store: Store, clock: FrozenClock) -> None:
    older = diamond_run(store)
    clock.advance(1)
    newer = diamond_run(store)
    clock.advance(1)
    taken = diamond_run(store)
    store.record_hand_over(taken, "f" * 36)
    clock.advance(1)
    cancelled = diamond_run(store)
    store.transition_run(cancelled, State.CANCELLED, reason="Cancelled")

    assert [r.id for r in store.awaiting_hand_over()] == [older, newer]
    assert [r.id for r in store.awaiting_hand_over(limit=1)] == [older]
    assert [r.id for r in store.awaiting_hand_over(
        created_before=START + timedelta(seconds=1))] == [older]


def test_a_refused_hand_over_is_noted_without_changing_state(store: Store) -> None:
    run_id = diamond_run(store)

    noted = store.note_hand_over_refused([run_id], "ConnectError: refused")

    run = store.get_run(run_id)
    assert noted == 1
    assert (run.state, run.reason) == (State.QUEUED, "AwaitingPrefect")
    assert run.message.startswith("Prefect did not take the run: ConnectError: refused;")
    last = store.transitions(run_id)[-1]
    assert (last.from_state, last.to_state, last.reason) == (
        State.QUEUED, State.QUEUED, "HandOverFailed")


def test_the_same_refusal_again_adds_no_history_but_a_new_one_does(store: Store) -> None:
    run_id = diamond_run(store)
    store.note_hand_over_refused([run_id], "ConnectError: refused")
    written = len(store.transitions(run_id))

    assert store.note_hand_over_refused([run_id], "ConnectError: refused") == 0
    assert len(store.transitions(run_id)) == written
    assert store.note_hand_over_refused([run_id], "HTTP 503") == 1
    assert len(store.transitions(run_id)) == written + 1


def test_a_refusal_is_not_noted_on_a_run_already_taken_or_finished(store: Store) -> None:
    taken, cancelled = diamond_run(store), diamond_run(store)
    store.record_hand_over(taken, "f" * 36)
    store.transition_run(cancelled, State.CANCELLED, reason="Cancelled")

    assert store.note_hand_over_refused([taken, cancelled], "late error") == 0
    assert store.get_run(taken).reason == "Created"
    assert store.get_run(cancelled).reason == "Cancelled"


def test_a_run_that_waited_for_prefect_says_when_it_was_taken(store: Store) -> None:
    run_id = diamond_run(store)
    store.note_hand_over_refused([run_id], "ConnectError: refused")
    flow_run_id = str(uuid.uuid4())

    run = store.record_hand_over(run_id, flow_run_id)

    assert run.prefect_flow_run_id == flow_run_id
    assert (run.state, run.reason) == (State.QUEUED, "HandedOver")
    assert [t.reason for t in store.transitions(run_id)] == [
        "Created", "HandOverFailed", "HandedOver"]


def test_a_run_taken_at_once_is_linked_without_history(store: Store) -> None:
    run_id = diamond_run(store)
    run = store.record_hand_over(run_id, "f" * 36)
    assert (run.prefect_flow_run_id, run.reason) == ("f" * 36, "Created")
    assert len(store.transitions(run_id)) == 1


def test_the_audit_trail_is_newest_first_and_filterable(ledger: Ledger,
                                                        clock: FrozenClock) -> None:
    ledger.audit(actor="alice", action="run.cancel", subject_kind="run", subject_id="abc",
                 details={"reason": "wrong branch", "n": 1})
    clock.advance(1)
    ledger.audit(actor="bob", action="release.rollback", subject_kind="release",
                 subject_id="7")
    ledger.audit(actor="alice", action="run.restart", subject_kind="run", subject_id="abd")

    trail = ledger.audit_trail()

    assert [(e.actor, e.action) for e in trail] == [
        ("alice", "run.restart"), ("bob", "release.rollback"), ("alice", "run.cancel")]
    assert trail[-1].details == {"reason": "wrong branch", "n": 1}
    assert (trail[-1].at, trail[0].at) == (START, clock())
    assert trail[1].details == {}
    assert [e.subject_id for e in ledger.audit_trail(subject_kind="run")] == ["abd", "abc"]
    assert [e.action for e in ledger.audit_trail(subject_kind="run", subject_id="abc")] == [
        "run.cancel"]
    assert len(ledger.audit_trail(limit=2)) == 2


# -- opening the store --------------------------------------------------------------------


def test_a_store_reopened_sees_what_was_written(store_url: str, clock: FrozenClock) -> None:
    first = Store.open(store_url, clock=clock)
    run_id = diamond_run(first)
    first.close()

    second = Store.open(store_url, clock=clock)
    try:
        assert second.get_run(run_id).stage("deploy").state is State.QUEUED
    finally:
        second.close()


def test_times_come_back_as_aware_utc(store: Store) -> None:
    run = store.get_run(diamond_run(store))
    assert run.created_at.tzinfo is not None
    assert run.created_at.utcoffset() is not None
    assert run.created_at == START


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("{tmp}/shipyard.db", "is not a valid URL"),
        ("shipyard.db", "is not a valid URL"),
        ("sqlite://", "in-memory SQLite store would vanish"),
        ("sqlite:///:memory:", "in-memory SQLite store would vanish"),
        ("mysql+nosuchdriver://u:hunter2@db/shipyard", "names the driver 'mysql+nosuchdriver'"),
        ("nosuchdb://u@{tmp}/shipyard.db", "names the driver 'nosuchdb'"),
        ("sqlite+nosuchdriver:///{tmp}/shipyard.db", "names the driver 'sqlite+nosuchdriver'"),
        ("sqlite+aiosqlite:///{tmp}/shipyard.db", "names the driver 'sqlite+aiosqlite'"),
        # A dialect SQLAlchemy knows, whose driver package (mysqlclient) is not installed.
        ("mysql://u:hunter2@db/shipyard", "names the driver 'mysql', which is not installed"),
        # asyncpg is installed (Prefect's server needs it), but the store is synchronous.
        ("postgresql+asyncpg://u:hunter2@db/shipyard",
         "names the asynchronous driver 'postgresql+asyncpg'"),
        ("postgresql+psycopg://u:hunter2@db:port/shipyard", "is not a valid URL"),
    ],
)
def test_an_unusable_url_is_refused_naming_the_problem_and_creates_nothing(
    tmp_path: Path, url: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = url.format(tmp=tmp_path)

    with pytest.raises(StoreConfigError) as raised:
        Store.open(url)

    message = str(raised.value)
    assert problem in message
    assert "SHIPYARD_DATABASE_URL" in message  # and says how to fix it
    assert "hunter2" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_store_config_error_is_a_value_error() -> None:
    assert issubclass(StoreConfigError, ValueError)
