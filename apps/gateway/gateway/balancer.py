"""Choosing one instance among the eligible ones: round-robin or least outstanding requests.

Pure: a balancer sees only the candidates it is handed (already filtered by the circuit
breakers and the version weights) and their outstanding counts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Literal, Protocol, TypeVar

__all__ = ["BALANCERS", "Balancer", "BalancerKind", "LeastOutstanding", "Loaded",
           "RoundRobin", "make_balancer"]

BalancerKind = Literal["least-outstanding", "round-robin"]
BALANCERS: tuple[BalancerKind, ...] = ("least-outstanding", "round-robin")


class Loaded(Protocol):
    @property
    def outstanding(self) -> int:
        """Requests sent to this instance and not yet answered."""
        ...


T = TypeVar("T", bound=Loaded)


class Balancer(Protocol):
    def choose(self, app: str, candidates: Sequence[T]) -> T:
        """One of `candidates` (never empty), for a request to `app`."""
        ...


class _Turns:
    """One counter per app, so the apps' request streams do not skew each other's turns."""

    def __init__(self) -> None:
        self._counters: dict[str, Iterator[int]] = {}

    def next(self, app: str) -> int:
        return next(self._counters.setdefault(app, itertools.count()))


class RoundRobin:
    """Each candidate in turn, whatever its load."""

    def __init__(self) -> None:
        self._turns = _Turns()

    def choose(self, app: str, candidates: Sequence[T]) -> T:
        return candidates[self._turns.next(app) % len(candidates)]


class LeastOutstanding:
    """The candidate with the fewest requests in flight: a slow instance accumulates
    outstanding requests and so receives fewer new ones. Ties (the common case under
    light load) are broken in turn, so idle instances share the traffic evenly instead
    of the first one taking it all."""

    def __init__(self) -> None:
        self._turns = _Turns()

    def choose(self, app: str, candidates: Sequence[T]) -> T:
        least = min(c.outstanding for c in candidates)
        tied = [c for c in candidates if c.outstanding == least]
        return tied[self._turns.next(app) % len(tied)]


def make_balancer(kind: BalancerKind) -> Balancer:
    return LeastOutstanding() if kind == "least-outstanding" else RoundRobin()
