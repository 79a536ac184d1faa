"""Chaos verification as plain data: a Chaos Toolkit-style experiment and its judgment.

An :class:`Experiment` states a steady-state :class:`Hypothesis` (probes over the traffic the
gate sends, each with a :class:`Tolerance`), a method of :class:`KillAction`\\ s (Chaos
Monkey's act: kill a random pod, or a share of them) and the two windows the hypothesis is
judged over. The run follows Chaos Toolkit's flow: judge the hypothesis; if it does not
hold, the experiment is *aborted* (there is no steady state to deviate from); run the
method; judge it again; if it no longer holds, the run *deviated*.

Everything here is pure: measurements come in as a
:class:`~shipyard.domain.traffic.TrafficSummary`, randomness as a ``random.Random``, times as
seconds from the experiment's start. ``stages/chaos.py`` does the I/O.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.traffic import TrafficSummary

__all__ = ["FAILURE_RATIO_CEILING", "MIN_LOAD_SHARE", "ChaosReport", "Experiment",
           "Hypothesis", "HypothesisResult", "Kill", "KillAction", "Measure", "Probe",
           "ProbeResult", "Tolerance", "Transition", "Verdict", "Window", "choose_victims",
           "evaluate_hypothesis", "experiment_for", "measure_of", "verdict"]

Measure = Literal["failure_ratio", "latency_p99", "latency_p95", "availability", "requests"]
Verdict = Literal["passed", "deviated", "aborted"]

FAILURE_RATIO_CEILING = 0.01
"""The loosest failure ratio the default hypothesis accepts, whatever the SLO says. A chaos
window lasts seconds: an app that loses more than one request in a hundred while one pod
dies is an outage in the making, even if its SLO would forgive it over a month."""

MIN_LOAD_SHARE = 0.25
"""The share of the requests the load was asked for that a window must hold to be judged
at all. A load generator starved of CPU on a busy machine still counts; a window with next
to no traffic proves nothing, and fails the ``requests`` probe instead of passing by
silence."""


@dataclass(frozen=True, slots=True)
class Tolerance:
    """What a probe's value must be: within ``[lo, hi]`` (``range``), at most ``hi``
    (``max``), at least ``lo`` (``min``), or exactly the boolean ``expected`` (``exact``).

    Build one with :meth:`between`, :meth:`at_most`, :meth:`at_least` or :meth:`exactly`.
    A missing value (no traffic to measure) is never within tolerance.
    """

    kind: Literal["range", "max", "min", "exact"]
    lo: float | None = None
    hi: float | None = None
    expected: bool | None = None

    def __post_init__(self) -> None:
        needs = {"range": ("lo", "hi"), "max": ("hi",), "min": ("lo",), "exact": ("expected",)}
        if self.kind not in needs:
            raise ValueError(f"tolerance kind {self.kind!r} must be range, max, min or exact")
        for name in ("lo", "hi", "expected"):
            given = getattr(self, name) is not None
            if given != (name in needs[self.kind]):
                raise ValueError(f"a {self.kind} tolerance {'needs' if not given else 'has no'}"
                                 f" {name}")
        for bound in (self.lo, self.hi):
            if bound is not None and (isinstance(bound, bool) or not math.isfinite(bound)):
                raise ValueError(f"tolerance bound {bound!r} must be a finite number")
        if self.kind == "range" and self.lo is not None and self.hi is not None \
                and self.lo > self.hi:
            raise ValueError(f"tolerance range [{self.lo}, {self.hi}] is empty")

    @classmethod
    def between(cls, lo: float, hi: float) -> Tolerance:
        return cls("range", lo=float(lo), hi=float(hi))

    @classmethod
    def at_most(cls, hi: float) -> Tolerance:
        return cls("max", hi=float(hi))

    @classmethod
    def at_least(cls, lo: float) -> Tolerance:
        return cls("min", lo=float(lo))

    @classmethod
    def exactly(cls, expected: bool) -> Tolerance:
        return cls("exact", expected=expected)

    def accepts(self, value: float | bool | None) -> bool:
        """Whether ``value`` is within this tolerance."""
        if self.kind == "exact":
            return isinstance(value, bool) and value is self.expected
        if value is None or isinstance(value, bool) or math.isnan(value):
            return False
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)

    def describe(self) -> str:
        """The tolerance as people write it: ``≤ 0.005``, ``in [0.9, 1]``."""
        if self.kind == "exact":
            return f"is {str(self.expected).lower()}"
        if self.kind == "range":
            return f"in [{_number(self.lo)}, {_number(self.hi)}]"
        return f"≤ {_number(self.hi)}" if self.kind == "max" else f"≥ {_number(self.lo)}"

    def to_json(self) -> dict[str, Any]:
        """Chaos Toolkit's shape for a range (``{"type": "range", "range": [lo, hi]}``),
        and the same pattern for the others."""
        if self.kind == "range":
            return {"type": "range", "range": [self.lo, self.hi]}
        if self.kind == "exact":
            return {"type": "exact", "value": self.expected}
        return {"type": self.kind, self.kind: self.hi if self.kind == "max" else self.lo}


@dataclass(frozen=True, slots=True)
class Probe:
    """One measurement of the steady state and the tolerance it must meet."""

    name: str
    measure: Measure
    tolerance: Tolerance

    def __post_init__(self) -> None:
        if self.measure not in _MEASURES:
            raise ValueError(f"probe {self.name!r}: measure {self.measure!r} must be one of "
                             f"{', '.join(_MEASURES)}")


_MEASURES: tuple[Measure, ...] = ("failure_ratio", "latency_p99", "latency_p95",
                                  "availability", "requests")


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """The steady state: every probe within its tolerance."""

    title: str
    probes: tuple[Probe, ...]

    def __post_init__(self) -> None:
        if not self.probes:
            raise ValueError(f"hypothesis {self.title!r} needs at least one probe")
        names = [p.name for p in self.probes]
        if len(set(names)) != len(names):
            raise ValueError(f"hypothesis {self.title!r}: probe names must be unique")


@dataclass(frozen=True, slots=True)
class KillAction:
    """Kill pods of ``target`` (a description of what is aimed at, e.g. a label
    selector): ``count`` of them, or a ``share`` in (0, 1]. Exactly one is given."""

    share: float | None = None
    count: int | None = None
    target: str = ""

    def __post_init__(self) -> None:
        if (self.share is None) == (self.count is None):
            raise ValueError("a kill action takes exactly one of share and count")
        if self.share is not None and (isinstance(self.share, bool)
                                       or not 0 < self.share <= 1):
            raise ValueError(f"kill share {self.share!r} must be in (0, 1]")
        if self.count is not None and (isinstance(self.count, bool) or self.count < 1):
            raise ValueError(f"kill count {self.count!r} must be at least 1")

    def describe(self) -> str:
        what = f"{self.count} pod{'s' if self.count != 1 else ''}" if self.count is not None \
            else f"{_number(self.share)} of the pods"
        return f"kill {what}" + (f" of {self.target}" if self.target else "")


@dataclass(frozen=True, slots=True)
class Experiment:
    """A steady state, the chaos to bring to it, and how long to watch.

    The hypothesis is judged over the first ``window_seconds`` of traffic, then the method
    runs, then, after ``settle_seconds``, over ``window_seconds`` more. The settle time is
    the moment the Service needs to learn that a pod is gone (the EndpointSlice update and
    kube-proxy's next sync, about a second apart): what the gate asks is whether the app
    keeps its SLO without the pod, not whether the requests that pod held in flight at the
    instant it died survived.
    """

    title: str
    hypothesis: Hypothesis
    method: tuple[KillAction, ...]
    settle_seconds: float
    window_seconds: float

    def __post_init__(self) -> None:
        if not self.method:
            raise ValueError(f"experiment {self.title!r} needs at least one action")
        if not self.window_seconds > 0:
            raise ValueError(f"window_seconds {self.window_seconds!r} must be positive")
        if not self.settle_seconds >= 0:
            raise ValueError(f"settle_seconds {self.settle_seconds!r} must not be negative")


def experiment_for(descriptor: AppDescriptor, *, target: str, rate_per_second: float,
                   window_seconds: float = 10.0, settle_seconds: float = 2.0,
                   kill: KillAction | None = None) -> Experiment:
    """The default experiment for an app: kill one pod of ``target`` (or as ``kill`` says)
    and hold the app to its SLO while load arrives at ``rate_per_second``.

    The hypothesis has three probes: ``requests`` at least :data:`MIN_LOAD_SHARE` of what
    the window should hold; ``failure-ratio`` at most ``1 - slo.availability``, capped at
    :data:`FAILURE_RATIO_CEILING`; ``latency-p99`` at most ``slo.latency_p99_seconds``.
    """
    if not rate_per_second > 0:
        raise ValueError(f"rate_per_second {rate_per_second!r} must be positive")
    slo = descriptor.slo
    budget = min(round(1 - slo.availability, 9), FAILURE_RATIO_CEILING)
    least = max(1, math.ceil(rate_per_second * window_seconds * MIN_LOAD_SHARE))
    hypothesis = Hypothesis(
        f"{descriptor.name} serves within its SLO",
        (Probe("requests", "requests", Tolerance.at_least(least)),
         Probe("failure-ratio", "failure_ratio", Tolerance.at_most(budget)),
         Probe("latency-p99", "latency_p99", Tolerance.at_most(slo.latency_p99_seconds))))
    action = kill or KillAction(count=1, target=target)
    return Experiment(f"{descriptor.name} survives: {action.describe()}", hypothesis,
                      (action,), settle_seconds, window_seconds)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    name: str
    measure: Measure
    value: float | None
    tolerance: Tolerance
    met: bool

    def describe(self) -> str:
        """``failure-ratio 0.42, expected ≤ 0.005``."""
        value = "no value" if self.value is None else _number(self.value)
        return f"{self.name} {value}, expected {self.tolerance.describe()}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "measure": self.measure, "value": self.value,
                "tolerance": self.tolerance.to_json(), "met": self.met}


@dataclass(frozen=True, slots=True)
class HypothesisResult:
    title: str
    met: bool
    probes: tuple[ProbeResult, ...]

    @property
    def unmet(self) -> tuple[ProbeResult, ...]:
        return tuple(p for p in self.probes if not p.met)

    def describe(self) -> str:
        """The unmet probes, or every probe when all are met."""
        return "; ".join(p.describe() for p in (self.unmet or self.probes))

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "met": self.met,
                "probes": [p.to_json() for p in self.probes]}


def measure_of(summary: TrafficSummary, what: Measure) -> float | None:
    """One measure of a window's traffic; ``None`` when the window has no request to
    measure it by."""
    if what == "requests":
        return float(summary.requests)
    if summary.requests == 0:
        return None
    values = {"failure_ratio": summary.failure_ratio,
              "availability": 1.0 - summary.failure_ratio,
              "latency_p99": summary.p99, "latency_p95": summary.p95}
    return _finite(values[what])


def evaluate_hypothesis(hypothesis: Hypothesis, summary: TrafficSummary) -> HypothesisResult:
    """Judge every probe of ``hypothesis`` over one window's traffic."""
    results = []
    for probe in hypothesis.probes:
        value = measure_of(summary, probe.measure)
        results.append(ProbeResult(probe.name, probe.measure, value, probe.tolerance,
                                   probe.tolerance.accepts(value)))
    return HypothesisResult(hypothesis.title, all(r.met for r in results), tuple(results))


def choose_victims(pods: Sequence[str], action: KillAction, rng: random.Random) -> list[str]:
    """The pods ``action`` kills, drawn at random from ``pods`` (Chaos Monkey's act).

    A share is rounded down (the gate asks whether the app survives losing that share,
    never more), but at least one pod dies, and never more than exist. The draw depends
    only on the set of names and ``rng``'s state, not on the order the API listed them in.
    No pods, no victims.
    """
    candidates = sorted(set(pods))
    if not candidates:
        return []
    if action.count is not None:
        wanted = action.count
    else:
        wanted = math.floor((action.share or 0) * len(candidates) + 1e-9)
    return rng.sample(candidates, max(1, min(wanted, len(candidates))))


def verdict(before: HypothesisResult, after: HypothesisResult | None) -> Verdict:
    """Chaos Toolkit's outcome: ``aborted`` when the steady state did not hold before the
    method (``after`` is then ``None``, nothing was killed), ``deviated`` when it did not
    hold after it, else ``passed``."""
    if not before.met:
        return "aborted"
    if after is None:
        raise ValueError("the steady state held before the method: judge it after as well")
    return "passed" if after.met else "deviated"


@dataclass(frozen=True, slots=True)
class Window:
    """A span of the experiment, in seconds from its start."""

    start: float
    end: float

    def to_json(self) -> dict[str, float]:
        return {"start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass(frozen=True, slots=True)
class Kill:
    """A pod the method killed, and when (seconds from the experiment's start)."""

    pod: str
    at_seconds: float


@dataclass(frozen=True, slots=True)
class Transition:
    """The traffic sent between the first kill and the second window (the settle time):
    reported, not judged."""

    window: Window
    requests: int
    failures: int

    def to_json(self) -> dict[str, Any]:
        return {"window": self.window.to_json(), "requests": self.requests,
                "failures": self.failures}


@dataclass(frozen=True, slots=True)
class ChaosReport:
    """What an experiment found, for the stage's outputs and the audit trail."""

    experiment: str
    target: str
    candidates: tuple[str, ...]
    before_window: Window
    before: HypothesisResult
    kills: tuple[Kill, ...] = ()
    after_window: Window | None = None
    after: HypothesisResult | None = None
    transition: Transition | None = None

    @property
    def verdict(self) -> Verdict:
        return verdict(self.before, self.after)

    def summary(self) -> str:
        """One line: the verdict and why."""
        outcome = self.verdict
        if outcome == "aborted":
            return (f"aborted: the steady state did not hold before the method, nothing "
                    f"was killed: {self.before.describe()}")
        killed = (f"killed {len(self.kills)} of {len(self.candidates)} pod"
                  f"{'s' if len(self.candidates) != 1 else ''} "
                  f"({', '.join(k.pod for k in self.kills)})")
        assert self.after is not None  # a verdict other than aborted needs it
        if outcome == "deviated":
            return f"deviated: {killed}; then {self.after.describe()}"
        return f"passed: {killed}; then {self.after.describe()}"

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able data (dicts, lists, strings, numbers, ``None``)."""
        return {
            "experiment": self.experiment,
            "target": self.target,
            "verdict": self.verdict,
            "summary": self.summary(),
            "candidates": list(self.candidates),
            "before": {"window": self.before_window.to_json(), **self.before.to_json()},
            "kills": [{"pod": k.pod, "at_seconds": round(k.at_seconds, 3)}
                      for k in self.kills],
            "transition": None if self.transition is None else self.transition.to_json(),
            "after": None if self.after is None or self.after_window is None else
            {"window": self.after_window.to_json(), **self.after.to_json()},
        }


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"
