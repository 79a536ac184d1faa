"""The stage graph of a delivery: the deploy locks first, dependency order per environment,
the gates before production, one judgment for the whole release, scale-downs after every
switch."""

from __future__ import annotations

import pytest

from pipelines.delivery import Gates, delivery_stages
from shipyard.domain.pipeline import InvalidPipeline, PipelineGraph, StageSpec
from stages.releases import ReleasePlan


def plan(app: str, *deps: str) -> ReleasePlan:
    return ReleasePlan(app=app, environment="staging", version="abc",
                       commit_sha="abc", ci_run_id="r", depends_on=list(deps))


PLANS = [plan("discovery"), plan("gateway", "discovery"), plan("data", "discovery")]
PLANNED = {p.app: f"plan:{p.app}" for p in PLANS}
ROUTE = ["staging", "prod"]


def requires(specs: tuple[StageSpec, ...]) -> dict[str, set[str]]:
    return {s.ref: set(s.requires) for s in specs}


def test_deploys_wait_for_the_same_environments_deploys_of_their_dependencies():
    specs = delivery_stages(PLANS, ROUTE, planned_by=PLANNED)
    graph = requires(specs)
    assert graph["staging:gateway"] == {"bake:gateway", "staging:discovery"}
    assert graph["prod:gateway"] == {"staging:gateway", "prod:discovery"}
    assert graph["prod:discovery"] == {"staging:discovery"}
    assert graph["bake:data"] == {"locks"}
    assert graph["locks"] == set(PLANNED.values())  # every plan before any lock
    PipelineGraph.of([*(StageSpec(p) for p in PLANNED.values()), *specs])  # a valid DAG


def test_scale_downs_wait_for_every_switch_so_a_coordinated_rollback_finds_them_warm():
    graph = requires(delivery_stages(PLANS, ROUTE, planned_by=PLANNED))
    assert graph["scale-down:data"] == {"prod:discovery", "prod:gateway", "prod:data"}


def test_gates_come_between_staging_and_production_and_one_judgment_holds_all():
    gates = Gates(canary=frozenset({"gateway"}), chaos=frozenset({"gateway", "data"}),
                  chaos_environment="staging", judgment=True)
    graph = requires(delivery_stages(PLANS, ROUTE, planned_by=PLANNED,
                                     gates=gates))
    assert graph["canary:gateway"] == {"staging:gateway"}
    assert graph["chaos:gateway"] == {"canary:gateway"}
    assert graph["chaos:data"] == {"staging:data"}
    assert graph["judgment"] == {"chaos:gateway", "chaos:data", "staging:discovery"}
    assert graph["prod:gateway"] == {"judgment", "prod:discovery"}
    assert "canary:discovery" not in graph  # production does not run it: no baseline


def test_a_promotion_bakes_then_deploys_to_production_only():
    specs = delivery_stages([plan("gateway")], ["prod"],
                            planned_by={"gateway": "plan"})
    assert [s.ref for s in specs] == ["locks", "bake:gateway", "prod:gateway",
                                      "scale-down:gateway", "rollback"]


def test_the_rollback_stage_waits_for_nothing():
    specs = delivery_stages(PLANS, ["staging"],
                            planned_by=PLANNED)
    assert requires(specs)["rollback"] == set()
    assert not any(s.ref.startswith("scale-down") for s in specs)


def test_apps_that_depend_on_each_other_in_a_cycle_are_refused():
    cyclic = [plan("api", "web"), plan("web", "api")]
    specs = delivery_stages(cyclic, ROUTE, planned_by={"api": "p", "web": "p"})
    with pytest.raises(InvalidPipeline, match="cycle"):
        PipelineGraph.of([StageSpec("p"), *specs])
