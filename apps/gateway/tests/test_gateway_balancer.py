"""Balancers over plain candidates."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gateway.balancer import LeastOutstanding, RoundRobin, make_balancer


@dataclass
class Candidate:
    name: str
    outstanding: int = 0


def spread(chosen: list[Candidate]) -> dict[str, int]:
    return dict(Counter(c.name for c in chosen))


def test_round_robin_takes_each_candidate_in_turn() -> None:
    balancer, candidates = RoundRobin(), [Candidate("a"), Candidate("b"), Candidate("c")]
    chosen = [balancer.choose("orders", candidates) for _ in range(6)]
    assert [c.name for c in chosen] == ["a", "b", "c", "a", "b", "c"]


def test_round_robin_ignores_load() -> None:
    balancer, candidates = RoundRobin(), [Candidate("a", 50), Candidate("b")]
    assert spread([balancer.choose("orders", candidates) for _ in range(4)]) == {"a": 2, "b": 2}


def test_each_app_has_its_own_turns() -> None:
    balancer, candidates = RoundRobin(), [Candidate("a"), Candidate("b")]
    balancer.choose("orders", candidates)
    assert balancer.choose("billing", candidates).name == "a"


def test_least_outstanding_picks_the_least_loaded() -> None:
    candidates = [Candidate("a", 3), Candidate("b", 1), Candidate("c", 2)]
    assert LeastOutstanding().choose("orders", candidates).name == "b"


def test_least_outstanding_shares_ties_evenly() -> None:
    balancer, candidates = LeastOutstanding(), [Candidate("a"), Candidate("b"), Candidate("c")]
    chosen = [balancer.choose("orders", candidates) for _ in range(9)]
    assert spread(chosen) == {"a": 3, "b": 3, "c": 3}


def test_least_outstanding_steers_around_a_slow_instance() -> None:
    balancer = LeastOutstanding()
    slow, fast = Candidate("slow"), Candidate("fast")
    for _ in range(10):  # the slow one never answers; the fast one at once
        chosen = balancer.choose("orders", [slow, fast])
        if chosen is slow:
            slow.outstanding += 1
    assert slow.outstanding == 1


def test_the_default_balancer_is_least_outstanding() -> None:
    assert isinstance(make_balancer("least-outstanding"), LeastOutstanding)
    assert isinstance(make_balancer("round-robin"), RoundRobin)
