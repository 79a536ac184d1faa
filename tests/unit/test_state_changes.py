"""Two looks at a run become the changes a follower reports: the run first, then its
stages in pipeline order, each subject heard of once and again only when it moves."""

from __future__ import annotations

from shipyard.domain.state_changes import RunSnapshot, StateChange, Status, state_changes
from shipyard.domain.states import State

QUEUED = Status(State.QUEUED)
SKIPPED = Status(State.SKIPPED)
RUNNING = Status(State.RUNNING, "StageStarted", "stage checkout started")


def snapshot(run: Status, **stages: Status) -> RunSnapshot:
    return RunSnapshot(run=run, stages=tuple(stages.items()))


def moves(changes: list[StateChange]) -> list[tuple[str, State | None, State]]:
    return [(change.stage or "(run)", change.previous, change.status.state)
            for change in changes]


def test_the_first_snapshot_reports_the_run_and_every_started_stage_in_pipeline_order(
) -> None:
    first = snapshot(RUNNING, checkout=RUNNING, build=QUEUED, test=SKIPPED, push=QUEUED)

    assert moves(state_changes(None, first)) == [
        ("(run)", None, State.RUNNING),
        ("checkout", None, State.RUNNING),
        ("test", None, State.SKIPPED),
    ]


def test_nothing_is_reported_when_no_state_changed() -> None:
    before = snapshot(RUNNING, checkout=RUNNING, build=QUEUED)
    after = snapshot(RUNNING, checkout=Status(State.RUNNING, "Retrying", "attempt 2"),
                     build=QUEUED)

    assert state_changes(before, after) == []


def test_only_the_subjects_that_moved_are_reported_with_their_previous_state() -> None:
    before = snapshot(RUNNING, checkout=RUNNING, build=QUEUED)
    after = snapshot(RUNNING, checkout=Status(State.SUCCEEDED, duration_seconds=4.2),
                     build=RUNNING)

    assert moves(state_changes(before, after)) == [
        ("checkout", State.RUNNING, State.SUCCEEDED),
        ("build", State.QUEUED, State.RUNNING),
    ]


def test_a_stage_the_pipeline_adds_later_is_reported_when_it_starts() -> None:
    before = snapshot(RUNNING, ci=RUNNING)
    added = snapshot(RUNNING, ci=RUNNING, **{"plan:web": QUEUED})
    started = snapshot(RUNNING, ci=RUNNING, **{"plan:web": RUNNING})

    assert state_changes(before, added) == []
    assert moves(state_changes(added, started)) == [("plan:web", State.QUEUED,
                                                     State.RUNNING)]


def test_a_failed_stage_carries_its_reason_message_and_duration() -> None:
    failed = Status(State.FAILED, "RolloutFailed", "web: 0/3 pods ready",
                    duration_seconds=12.5)
    before = snapshot(RUNNING, **{"deploy:staging/web": RUNNING})
    after = snapshot(RUNNING, **{"deploy:staging/web": failed})

    [change] = state_changes(before, after)

    assert change.stage == "deploy:staging/web"
    assert change.status == failed


def test_the_runs_final_state_comes_before_the_stages_that_ended_with_it() -> None:
    before = snapshot(RUNNING, deploy=RUNNING, rollback=QUEUED)
    final = Status(State.FAILED, "StageFailed", "failed: deploy RolloutFailed: timeout",
                   duration_seconds=30.0)
    after = snapshot(final, deploy=Status(State.FAILED, "RolloutFailed", "timeout"),
                     rollback=Status(State.SKIPPED, "RequirementNotMet", "not needed"))

    changes = state_changes(before, after)

    assert moves(changes) == [
        ("(run)", State.RUNNING, State.FAILED),
        ("deploy", State.RUNNING, State.FAILED),
        ("rollback", State.QUEUED, State.SKIPPED),
    ]
    assert changes[0].is_run
    assert changes[0].status == final


def test_a_stage_that_moved_twice_between_looks_is_reported_once_in_its_last_state() -> None:
    before = snapshot(RUNNING, checkout=QUEUED)
    after = snapshot(RUNNING, checkout=Status(State.SUCCEEDED, duration_seconds=0.3))

    assert moves(state_changes(before, after)) == [
        ("checkout", State.QUEUED, State.SUCCEEDED),
    ]


def test_a_stage_back_from_waiting_for_a_judgment_is_reported_running_again() -> None:
    before = snapshot(Status(State.WAITING), judgment=Status(State.WAITING))
    after = snapshot(RUNNING, judgment=RUNNING)

    assert moves(state_changes(before, after)) == [
        ("(run)", State.WAITING, State.RUNNING),
        ("judgment", State.WAITING, State.RUNNING),
    ]
