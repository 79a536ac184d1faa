"""What a restart from a stage runs again, on plain stage data."""

from __future__ import annotations

import pytest

from shipyard.domain.restarts import RecordedStage, RestartRefused, stages_to_rerun
from shipyard.domain.states import State

S, F, R, K = State.SUCCEEDED, State.FAILED, State.ROLLED_BACK, State.SKIPPED


def ci(*, push: State = S) -> list[RecordedStage]:
    return [RecordedStage("checkout", (), S), RecordedStage("changes", ("checkout",), S),
            RecordedStage("test:a", ("changes",), S), RecordedStage("build:a", ("test:a",), S),
            RecordedStage("push:a", ("build:a",), push)]


def failed_release() -> list[RecordedStage]:
    """A release whose canary failed: staging was rolled back, production never ran."""
    return [RecordedStage("ci", (), S), RecordedStage("plan:a", ("ci",), S),
            RecordedStage("locks", ("plan:a",), S), RecordedStage("bake:a", ("locks",), S),
            RecordedStage("staging:a", ("bake:a",), R),
            RecordedStage("canary:a", ("staging:a",), F),
            RecordedStage("chaos:a", ("canary:a",), K),
            RecordedStage("prod:a", ("chaos:a",), K),
            RecordedStage("scale-down:a", ("prod:a",), K),
            RecordedStage("rollback", (), S)]


def test_a_restart_runs_the_stage_and_what_requires_it():
    assert stages_to_rerun("r1", "ci", S, ci(), "build:a") == {"build:a", "push:a"}


def test_what_the_run_undid_or_never_finished_runs_again_with_what_requires_it():
    rerun = stages_to_rerun("r1", "release", F, failed_release(), "canary:a")
    # staging was rolled back: it deploys again before the canary that needs it.
    assert rerun == {"staging:a", "canary:a", "chaos:a", "prod:a", "scale-down:a"}
    assert "bake:a" not in rerun and "plan:a" not in rerun and "ci" not in rerun


def test_a_stage_skipped_by_a_condition_does_not_drag_what_came_before():
    assert stages_to_rerun("r1", "ci", S, ci(push=K), "test:a") == {
        "test:a", "build:a", "push:a"}


@pytest.mark.parametrize(("state", "stage", "says"), [
    (State.RUNNING, "build:a", "is running; restart a run once it has ended (its stages: "
                               "checkout, changes, test:a, build:a, push:a)"),
    (S, "deploy", "has no stage 'deploy'; its stages are: checkout, changes, test:a, "
                  "build:a, push:a"),
])
def test_a_run_still_going_or_a_stage_it_lacks_is_refused_with_its_stages(state, stage,
                                                                           says):
    with pytest.raises(RestartRefused) as refused:
        stages_to_rerun("r1", "ci", state, ci(), stage)
    assert says in str(refused.value)


def test_a_pipeline_that_cannot_restart_is_named():
    with pytest.raises(RestartRefused, match="a restart is for ci, cd, release, promote, "
                                             "rollback runs"):
        stages_to_rerun("r1", "judgment-probe", S, ci(), "checkout")
