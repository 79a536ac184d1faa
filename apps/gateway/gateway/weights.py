"""Weighted routing between the versions of one app, for canaries.

The rule, for an app with weights {version: weight >= 0}:
- a version with a positive weight gets that share of the traffic, relative to the
  other positively weighted versions that have an available instance (a version whose
  instances are all gone or ejected gives up its share to the others);
- a version weighted 0 gets nothing, ever: that is how a version is drained;
- versions not listed get nothing while a positively weighted one is available, and
  share the traffic (by the balancer alone) when none is, so weights that a rollout
  left stale can never take an app down.
An app without weights routes to every available instance.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

__all__ = ["AppWeights", "Weights", "eligible_versions"]

AppWeights = Mapping[str, int]
Weights = Mapping[str, AppWeights]


def eligible_versions(weights: AppWeights | None, available: Collection[str],
                      draw: Callable[[], float]) -> frozenset[str]:
    """The versions one request may go to, given the `available` versions (with at least
    one instance able to take it). `draw` returns a float in [0, 1) and is called only
    when there is a choice to make, so a seeded random source pins every decision.
    Empty when no version may take the request."""
    if weights is None:
        return frozenset(available)
    weighted = [(v, weights[v]) for v in sorted(available) if weights.get(v, 0) > 0]
    if not weighted:
        return frozenset(v for v in available if v not in weights)
    if len(weighted) == 1:
        return frozenset({weighted[0][0]})
    point = draw() * sum(weight for _, weight in weighted)
    for version, weight in weighted:
        point -= weight
        if point < 0:
            return frozenset({version})
    return frozenset({weighted[-1][0]})  # only reached through float rounding
