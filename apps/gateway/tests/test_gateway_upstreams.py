"""Choosing an instance: breakers, then weights, then the balancer, over plain Instances."""

from __future__ import annotations

from collections import Counter

import pytest
from gateway.balancer import RoundRobin
from gateway.breaker import BreakerPolicy, BreakerState
from gateway.outcome import Outcome
from gateway.upstreams import NoInstance, Pick, Upstreams
from gateway.weights import Weights
from servicekit import Instance

POLICY = BreakerPolicy(consecutive_failures=1, cooldown_seconds=10)
FAIL, OK = Outcome(status=503), Outcome(status=200)


def instance(instance_id: str, version: str | None = "1.0.0") -> Instance:
    return Instance("data", instance_id, "10.0.0.1", 8080, "UP",
                    {} if version is None else {"version": version})


class World:
    def __init__(self) -> None:
        self.now = 0.0
        self.registry: dict[str, list[Instance]] = {
            "data": [instance("data-a"), instance("data-b")]}
        self.weights: Weights = {}
        self.upstreams = Upstreams(lambda app: self.registry.get(app, []), RoundRobin(),
                                   POLICY, lambda: self.weights, lambda: 0.5, lambda: self.now)

    def pick(self, exclude: frozenset[str] = frozenset()) -> Pick:
        chosen = self.upstreams.pick("data", exclude)
        assert isinstance(chosen, Pick), chosen
        return chosen

    def send(self, outcome: Outcome = OK) -> str:
        pick = self.pick()
        self.upstreams.finish(pick, outcome)
        return pick.upstream.instance_id


@pytest.fixture
def world() -> World:
    return World()


def test_picks_spread_over_the_instances(world: World) -> None:
    assert Counter(world.send() for _ in range(4)) == {"data-a": 2, "data-b": 2}


def test_an_unknown_app_has_no_instance_and_says_so(world: World) -> None:
    refused = world.upstreams.pick("billing")
    assert isinstance(refused, NoInstance)
    assert "no instance of app 'billing'" in refused.reason


def test_a_retry_excludes_the_instances_tried(world: World) -> None:
    assert world.pick(frozenset({"data-a"})).upstream.instance_id == "data-b"
    refused = world.upstreams.pick("data", frozenset({"data-a", "data-b"}))
    assert isinstance(refused, NoInstance)


def test_an_attempt_is_outstanding_until_finished(world: World) -> None:
    pick = world.pick()
    assert pick.upstream.outstanding == 1
    world.upstreams.finish(pick, OK)
    assert pick.upstream.outstanding == 0


def test_an_instance_whose_breaker_opened_gets_no_traffic(world: World) -> None:
    assert world.send(FAIL) == "data-a"
    assert {world.send() for _ in range(4)} == {"data-b"}
    assert world.upstreams.describe()["data"][0]["breaker"] == "open"


def test_when_every_breaker_is_open_the_refusal_says_so(world: World) -> None:
    world.send(FAIL)
    world.send(FAIL)
    refused = world.upstreams.pick("data")
    assert isinstance(refused, NoInstance)
    assert "circuit breaker" in refused.reason


def test_after_the_cooldown_one_probe_is_sent_and_its_success_readmits(world: World) -> None:
    world.send(FAIL)
    world.now += 10
    probe = world.pick(frozenset({"data-b"}))
    assert probe.permit.probe
    world.upstreams.finish(probe, OK)
    assert probe.upstream.breaker.state is BreakerState.CLOSED


def test_an_abandoned_probe_frees_the_slot(world: World) -> None:
    world.send(FAIL)
    world.now += 10
    world.upstreams.finish(world.pick(frozenset({"data-b"})), None)
    assert world.pick(frozenset({"data-b"})).permit.probe


def test_weights_choose_the_version_before_the_balancer_chooses_the_instance(
        world: World) -> None:
    world.registry["data"] = [instance("data-a", "1.0.0"), instance("data-b", "1.0.0"),
                              instance("data-c", "2.0.0")]
    world.weights = {"data": {"1.0.0": 0, "2.0.0": 1}}
    assert {world.send() for _ in range(4)} == {"data-c"}


def test_weights_leaving_no_eligible_version_are_a_refusal(world: World) -> None:
    world.weights = {"data": {"1.0.0": 0}}
    refused = world.upstreams.pick("data")
    assert isinstance(refused, NoInstance)
    assert "weight" in refused.reason


def test_an_instance_without_a_version_is_reported_as_unknown(world: World) -> None:
    world.registry["data"] = [instance("data-a", None)]
    assert world.upstreams.describe(["data"])["data"][0]["version"] == "unknown"


def test_an_instance_that_left_discovery_leaves_the_table(world: World) -> None:
    world.send(FAIL)
    world.registry["data"] = [instance("data-b")]
    assert [u["instance_id"] for u in world.upstreams.describe()["data"]] == ["data-b"]
    world.registry["data"] = []
    assert world.upstreams.describe() == {}


def test_the_description_lists_outstanding_breaker_and_version(world: World) -> None:
    world.pick()
    assert world.upstreams.describe() == {"data": [
        {"instance_id": "data-a", "version": "1.0.0", "outstanding": 1, "breaker": "closed"},
        {"instance_id": "data-b", "version": "1.0.0", "outstanding": 0, "breaker": "closed"},
    ]}
