"""The stage DAG: validation, order, readiness, skips and the run's outcome."""

from __future__ import annotations

import pytest

from shipyard.domain.pipeline import (
    InvalidPipeline,
    PipelineGraph,
    SkipDecision,
    StageSpec,
    run_outcome,
)
from shipyard.domain.states import State

S = State

#        checkout
#        /      \
#    test:a    test:b        two parallel branches...
#        \      /
#         build              ...joined
#           |
#         deploy
DIAMOND = (
    StageSpec("checkout"),
    StageSpec("test:a", ("checkout",)),
    StageSpec("test:b", ("checkout",)),
    StageSpec("build", ("test:a", "test:b")),
    StageSpec("deploy", ("build",)),
)


@pytest.fixture
def diamond() -> PipelineGraph:
    return PipelineGraph.of(DIAMOND)


# -- validation ---------------------------------------------------------------------------


def test_a_pipeline_needs_a_stage() -> None:
    with pytest.raises(InvalidPipeline, match="at least one stage"):
        PipelineGraph.of([])


@pytest.mark.parametrize("ref", ["", "Build", "-build", "build step", "build/1", "é",
                                 "a" * 101, "build\n"])
def test_a_malformed_ref_is_rejected_naming_it(ref: str) -> None:
    with pytest.raises(InvalidPipeline, match="is invalid") as raised:
        PipelineGraph.of([StageSpec(ref)])
    assert repr(ref) in str(raised.value)


@pytest.mark.parametrize("ref", ["b", "0", "test:gateway", "cd:api-v2", "x.y_z", "a" * 100])
def test_a_well_formed_ref_is_accepted(ref: str) -> None:
    assert ref in PipelineGraph.of([StageSpec(ref)])


def test_a_duplicate_ref_is_rejected_naming_it() -> None:
    with pytest.raises(InvalidPipeline, match=r"stage ref 'build' appears twice"):
        PipelineGraph.of([StageSpec("build"), StageSpec("test"), StageSpec("build")])


def test_an_unknown_requirement_is_rejected_naming_it_and_the_known_stages() -> None:
    with pytest.raises(InvalidPipeline) as raised:
        PipelineGraph.of([StageSpec("checkout"), StageSpec("deploy", ("biuld",))])
    assert str(raised.value) == (
        "stage 'deploy' requires 'biuld', which is not a stage of this pipeline "
        "(stages: checkout, deploy)"
    )


def test_a_stage_requiring_itself_is_rejected() -> None:
    with pytest.raises(InvalidPipeline, match=r"stage 'loop' requires itself"):
        PipelineGraph.of([StageSpec("loop", ("loop",))])


def test_a_cycle_is_rejected_naming_every_ref_on_it() -> None:
    with pytest.raises(InvalidPipeline, match="form a cycle") as raised:
        PipelineGraph.of([
            StageSpec("checkout"),
            StageSpec("a", ("checkout", "c")),
            StageSpec("b", ("a",)),
            StageSpec("c", ("b",)),
        ])
    cycle = str(raised.value).split(": ", 1)[1].split(" -> ")
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}
    assert "checkout" not in cycle


def test_invalid_pipeline_is_a_value_error() -> None:
    assert issubclass(InvalidPipeline, ValueError)


# -- shape --------------------------------------------------------------------------------


def test_order_puts_every_stage_after_its_requirements(diamond: PipelineGraph) -> None:
    order = diamond.order
    assert sorted(order) == sorted(s.ref for s in DIAMOND)
    for spec in DIAMOND:
        for required in spec.requires:
            assert order.index(required) < order.index(spec.ref)


def test_stages_are_looked_up_by_ref(diamond: PipelineGraph) -> None:
    assert diamond["build"] == StageSpec("build", ("test:a", "test:b"))
    assert "deploy" in diamond
    assert "nope" not in diamond
    with pytest.raises(KeyError):
        diamond["nope"]


def test_dependents_are_the_direct_ones_only(diamond: PipelineGraph) -> None:
    assert set(diamond.dependents("checkout")) == {"test:a", "test:b"}
    assert diamond.dependents("test:a") == ("build",)
    assert diamond.dependents("deploy") == ()


def test_a_stage_title_defaults_to_its_ref() -> None:
    assert StageSpec("test:a").title == "test:a"
    assert StageSpec("test:a", name="test app a").title == "test app a"


# -- readiness ----------------------------------------------------------------------------


def test_only_stages_without_requirements_are_ready_at_first(diamond: PipelineGraph) -> None:
    assert diamond.ready({}) == ("checkout",)


def test_parallel_branches_become_ready_together(diamond: PipelineGraph) -> None:
    ready = diamond.ready({"checkout": S.SUCCEEDED})
    assert set(ready) == {"test:a", "test:b"}


def test_a_join_waits_for_every_branch(diamond: PipelineGraph) -> None:
    one_branch_done = {"checkout": S.SUCCEEDED, "test:a": S.SUCCEEDED, "test:b": S.RUNNING}
    assert diamond.ready(one_branch_done) == ()

    both_done = {**one_branch_done, "test:b": S.SUCCEEDED}
    assert diamond.ready(both_done) == ("build",)


def test_a_stage_already_started_is_not_ready_again(diamond: PipelineGraph) -> None:
    assert diamond.ready({"checkout": S.RUNNING}) == ()


@pytest.mark.parametrize("blocker", [S.FAILED, S.SKIPPED, S.CANCELLED, S.ROLLED_BACK,
                                     S.WAITING, S.RUNNING, S.QUEUED])
def test_a_requirement_that_did_not_succeed_keeps_its_dependents_waiting(
    diamond: PipelineGraph, blocker: State
) -> None:
    states = {"checkout": S.SUCCEEDED, "test:a": S.SUCCEEDED, "test:b": blocker}
    assert "build" not in diamond.ready(states)


# -- skips --------------------------------------------------------------------------------


@pytest.mark.parametrize("blocker", [S.FAILED, S.CANCELLED, S.SKIPPED, S.ROLLED_BACK])
def test_a_blocked_requirement_skips_its_dependents_transitively(
    diamond: PipelineGraph, blocker: State
) -> None:
    states = {"checkout": S.SUCCEEDED, "test:a": blocker, "test:b": S.RUNNING}

    assert diamond.skips(states) == (
        SkipDecision("build", blocked_by="test:a", blocker_state=blocker),
        SkipDecision("deploy", blocked_by="build", blocker_state=S.SKIPPED),
    )


def test_a_skip_message_names_the_blocker_and_its_state() -> None:
    decision = SkipDecision("build", blocked_by="test:a", blocker_state=S.FAILED)
    assert decision.message == "skipped because requirement 'test:a' failed"


def test_a_failed_first_stage_skips_everything_downstream(diamond: PipelineGraph) -> None:
    decisions = diamond.skips({"checkout": S.FAILED})

    assert {d.ref: d.blocked_by for d in decisions} == {
        "test:a": "checkout", "test:b": "checkout", "build": "test:a", "deploy": "build",
    }
    # Each stage is decided after the stage that blocks it.
    refs = [d.ref for d in decisions]
    assert refs.index("build") > refs.index("test:a")
    assert refs.index("deploy") > refs.index("build")


def test_an_independent_branch_is_not_skipped() -> None:
    graph = PipelineGraph.of([
        StageSpec("checkout"),
        StageSpec("test:a", ("checkout",)),
        StageSpec("cd:a", ("test:a",)),
        StageSpec("test:b", ("checkout",)),
        StageSpec("cd:b", ("test:b",)),
    ])
    decisions = graph.skips({"checkout": S.SUCCEEDED, "test:a": S.FAILED})

    assert [d.ref for d in decisions] == ["cd:a"]


@pytest.mark.parametrize("state", [S.SUCCEEDED, S.RUNNING, S.WAITING, S.QUEUED])
def test_nothing_is_skipped_while_requirements_can_still_succeed(
    diamond: PipelineGraph, state: State
) -> None:
    assert diamond.skips({"checkout": S.SUCCEEDED, "test:a": state, "test:b": state}) == ()


def test_a_stage_that_already_finished_is_never_skipped(diamond: PipelineGraph) -> None:
    states = {"checkout": S.SUCCEEDED, "test:a": S.FAILED, "test:b": S.SUCCEEDED,
              "build": S.CANCELLED}
    assert diamond.skips(states) == (SkipDecision("deploy", "build", S.CANCELLED),)


# -- run outcome --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "outcome"),
    [
        ([], None),
        ([S.SUCCEEDED, S.RUNNING], None),
        ([S.SUCCEEDED, S.QUEUED], None),
        ([S.FAILED, S.WAITING], None),
        ([S.SUCCEEDED], S.SUCCEEDED),
        ([S.SUCCEEDED, S.SKIPPED], S.SUCCEEDED),
        ([S.SKIPPED, S.SKIPPED], S.SUCCEEDED),
        ([S.SUCCEEDED, S.FAILED, S.SKIPPED], S.FAILED),
        ([S.CANCELLED, S.FAILED], S.FAILED),
        ([S.ROLLED_BACK, S.FAILED], S.FAILED),
        ([S.SUCCEEDED, S.CANCELLED], S.CANCELLED),
        ([S.ROLLED_BACK, S.CANCELLED], S.CANCELLED),
        ([S.ROLLED_BACK, S.ROLLED_BACK], S.ROLLED_BACK),
        ([S.SUCCEEDED, S.ROLLED_BACK], S.ROLLED_BACK),
    ],
)
def test_the_run_outcome_adds_up_its_stages(states: list[State], outcome: State | None) -> None:
    assert run_outcome(states) is outcome


def test_downstream_is_the_stage_and_everything_that_needs_it() -> None:
    graph = PipelineGraph.of([
        StageSpec("checkout"), StageSpec("changes", ("checkout",)),
        StageSpec("test:a", ("changes",)), StageSpec("build:a", ("test:a",)),
        StageSpec("push:a", ("build:a",)), StageSpec("test:b", ("changes",)),
        StageSpec("build:b", ("test:b",)), StageSpec("report", ("push:a", "build:b")),
    ])
    assert graph.downstream("build:a") == {"build:a", "push:a", "report"}
    assert graph.downstream("report") == {"report"}
    assert graph.downstream("changes") == set(graph.order) - {"checkout"}
