"""The instances the gateway routes to, with what it knows about each: requests in flight
and a circuit breaker. Selection composes the three rules in order: circuit breakers
(which instances may take traffic), version weights (which versions may), balancer (which
one of those).

Everything here runs on the event loop between two awaits, so it needs no lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from servicekit import Instance

from gateway.balancer import Balancer
from gateway.breaker import BreakerPolicy, BreakerState, CircuitBreaker, Clock, Permit
from gateway.outcome import Outcome
from gateway.weights import Weights, eligible_versions

__all__ = ["UNKNOWN_VERSION", "NoInstance", "Pick", "Upstream", "Upstreams"]

logger = logging.getLogger("gateway.upstreams")

UNKNOWN_VERSION = "unknown"  # an instance registered without a "version" in its metadata
Lookup = Callable[[str], list[Instance]]


class Upstream:
    """One instance of one app as the gateway sees it."""

    def __init__(self, instance: Instance, breaker: CircuitBreaker) -> None:
        self.instance = instance
        self.breaker = breaker
        self.outstanding = 0

    @property
    def app(self) -> str:
        return self.instance.app

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    @property
    def version(self) -> str:
        return self.instance.metadata.get("version") or UNKNOWN_VERSION

    def describe(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "version": self.version,
                "outstanding": self.outstanding, "breaker": str(self.breaker.state)}


@dataclass(frozen=True)
class Pick:
    """The instance chosen for one attempt, holding its breaker permit."""

    upstream: Upstream
    permit: Permit


@dataclass(frozen=True)
class NoInstance:
    """Why no instance could take an attempt."""

    reason: str


class Upstreams:
    """Per-instance state for every app routed to, kept in step with discovery's view.

    An instance that leaves discovery leaves this table (and its breaker with it) the
    next time its app is looked at; requests in flight to it finish on the object they
    hold.
    """

    def __init__(self, lookup: Lookup, balancer: Balancer, policy: BreakerPolicy,
                 weights: Callable[[], Weights], rand: Callable[[], float],
                 clock: Clock) -> None:
        self.lookup = lookup
        self.balancer = balancer
        self.policy = policy
        self.weights = weights
        self.rand = rand
        self.clock = clock
        self._apps: dict[str, dict[str, Upstream]] = {}

    def of(self, app: str) -> list[Upstream]:
        """`app`'s UP instances now, in discovery's order (by id), with their state."""
        known = self._apps.get(app, {})
        current: dict[str, Upstream] = {}
        for instance in self.lookup(app):
            upstream = known.get(instance.instance_id)
            if upstream is None:
                upstream = Upstream(instance, CircuitBreaker(self.policy, self.clock))
            else:
                upstream.instance = instance  # metadata (the version) may have changed
            current[instance.instance_id] = upstream
        if current:
            self._apps[app] = current
        else:
            self._apps.pop(app, None)
        return list(current.values())

    def known_apps(self) -> list[str]:
        """The apps routed to so far that still have instances."""
        return sorted(app for app in list(self._apps) if self.of(app))

    def pick(self, app: str, exclude: frozenset[str] = frozenset()) -> Pick | NoInstance:
        """Choose an instance of `app` other than those in `exclude` (ids), and count the
        attempt as outstanding on it. Every Pick must be ended by `finish`."""
        upstreams = self.of(app)
        if not upstreams:
            return NoInstance(f"no instance of app {app!r} is registered and UP in discovery")
        fresh = [u for u in upstreams if u.instance_id not in exclude]
        if not fresh:
            return NoInstance(f"every instance of app {app!r} was tried")
        admitted = [u for u in fresh if u.breaker.allows_request()]
        if not admitted:
            return NoInstance(f"every instance of app {app!r} is ejected by its circuit "
                              f"breaker for up to {self.policy.cooldown_seconds:g} s")
        versions = eligible_versions(self.weights().get(app), {u.version for u in admitted},
                                     self.rand)
        eligible = [u for u in admitted if u.version in versions]
        if not eligible:
            return NoInstance(f"no available instance of app {app!r} runs a version with "
                              "a positive weight (versions weighted 0 take no traffic)")
        chosen = self.balancer.choose(app, eligible)
        chosen.outstanding += 1
        return Pick(chosen, chosen.breaker.acquire())

    def finish(self, pick: Pick, outcome: Outcome | None) -> None:
        """End `pick`'s attempt: `outcome` is the breaker's verdict, None for none (the
        attempt was abandoned before the instance could answer)."""
        upstream, breaker = pick.upstream, pick.upstream.breaker
        upstream.outstanding -= 1
        if outcome is None:
            breaker.release(pick.permit)
            return
        before = breaker.state
        breaker.record(pick.permit, success=not outcome.instance_failed)
        after = breaker.state
        if after is not before and after is BreakerState.OPEN:
            logger.warning("circuit opened for %s instance %s (%s): ejected for %g s",
                           upstream.app, upstream.instance_id, outcome.label,
                           self.policy.cooldown_seconds)
        elif after is not before and after is BreakerState.CLOSED:
            logger.info("circuit closed for %s instance %s: the probe succeeded",
                        upstream.app, upstream.instance_id)

    def describe(self, apps: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """{app: [instance descriptions]} for `apps` (default: every app routed to)."""
        names = self.known_apps() if apps is None else apps
        return {app: [u.describe() for u in self.of(app)] for app in names}
