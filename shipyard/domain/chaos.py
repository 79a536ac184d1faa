"""Chaos verification as plain data: tolerances, victims, hypotheses, verdicts and the
report of an experiment.

The gate runs a Chaos Toolkit experiment (``shipyard.domain.chaos_experiments`` makes the
default one, ``shipyard.domain.chaos_journal`` reads what Chaos Toolkit's journal says
happened). The run follows Chaos Toolkit's flow: judge the steady-state hypothesis; if it
does not hold, the experiment is *aborted* (there is no steady state to deviate from); run
the method; judge it again; if it no longer holds, the run *deviated*; then the rollbacks.

A :class:`ChaosReport` is what the stage records, the audit trail keeps and the run page
shows: each probe as a :class:`ProbeResult` against its :class:`Tolerance`, the pods the
method killed, every action and rollback, and the journal itself.

Everything here is pure: randomness comes in as a ``random.Random``, times as seconds from
the experiment's start.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FAILURE_RATIO_CEILING", "MIN_LOAD_SHARE", "ActivityRun", "ChaosReport",
           "HypothesisResult", "Kill", "KillAction", "ProbeResult", "Tolerance",
           "Transition", "Verdict", "Window", "choose_victims", "verdict"]

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
    (``max``), at least ``lo`` (``min``), exactly the boolean ``expected`` (``exact``), or
    what a Chaos Toolkit tolerance of another kind says (``text``: a regex, a JSON path, a
    probe of its own), which only Chaos Toolkit judges.

    Build one with :meth:`between`, :meth:`at_most`, :meth:`at_least`, :meth:`exactly` or
    :meth:`written`. A missing value (no traffic to measure) is never within tolerance.
    """

    kind: Literal["range", "max", "min", "exact", "text"]
    lo: float | None = None
    hi: float | None = None
    expected: bool | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        needs = {"range": ("lo", "hi"), "max": ("hi",), "min": ("lo",), "exact": ("expected",),
                 "text": ("text",)}
        if self.kind not in needs:
            raise ValueError(f"tolerance kind {self.kind!r} must be range, max, min, exact "
                             "or text")
        for name in ("lo", "hi", "expected", "text"):
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

    @classmethod
    def written(cls, text: str) -> Tolerance:
        """A tolerance Chaos Toolkit judges, as the experiment writes it."""
        return cls("text", text=text)

    def accepts(self, value: float | bool | None) -> bool:
        """Whether ``value`` is within this tolerance (never, for a ``text`` one: Chaos
        Toolkit's word is in the :class:`ProbeResult`)."""
        if self.kind == "text":
            return False
        if self.kind == "exact":
            return isinstance(value, bool) and value is self.expected
        if value is None or isinstance(value, bool) or math.isnan(value):
            return False
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)

    def describe(self) -> str:
        """The tolerance as people write it: ``≤ 0.005``, ``in [0.9, 1]``."""
        if self.kind == "text":
            return str(self.text)
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
        if self.kind == "text":
            return {"type": "text", "text": self.text}
        return {"type": self.kind, self.kind: self.hi if self.kind == "max" else self.lo}


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
class ProbeResult:
    """One measure of the steady state against its tolerance. ``measure`` names what was
    measured (``failure_ratio``, or the field a Chaos Toolkit ``range`` targets, or
    ``value``); ``note`` says what a value that is no number was, or why the probe
    failed."""

    name: str
    measure: str
    value: float | None
    tolerance: Tolerance
    met: bool
    note: str = ""

    def describe(self) -> str:
        """``failure-ratio 0.42, expected ≤ 0.005``."""
        value = self.note if self.value is None and self.note else (
            "no value" if self.value is None else _number(self.value))
        return f"{self.name} {value}, expected {self.tolerance.describe()}"

    def to_json(self) -> dict[str, Any]:
        data = {"name": self.name, "measure": self.measure, "value": self.value,
                "tolerance": self.tolerance.to_json(), "met": self.met}
        if self.note:
            data["note"] = self.note
        return data


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
class ActivityRun:
    """An action or probe of the method, or a rollback, as Chaos Toolkit's journal has it:
    whether it succeeded, when (seconds from the experiment's start), what it returned
    (JSON-able, trimmed) and, when it failed, why."""

    name: str
    kind: str
    succeeded: bool
    window: Window
    output: Any = None
    error: str = ""

    def describe(self) -> str:
        """``action inject-latency succeeded in 41.2s`` or ``action kill-pods failed:
        ...``."""
        if not self.succeeded:
            return f"{self.kind} {self.name} failed: {self.error or 'no reason given'}"
        took = self.window.end - self.window.start
        return f"{self.kind} {self.name} succeeded in {took:.1f}s"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind,
                "status": "succeeded" if self.succeeded else "failed",
                "window": self.window.to_json(), "output": self.output, "error": self.error}


@dataclass(frozen=True, slots=True)
class ChaosReport:
    """What an experiment found, for the stage's outputs and the audit trail.

    ``method`` and ``rollbacks`` are the activities the journal records; ``stopped`` says
    why the run ended before it could be judged (interrupted, aborted by Chaos Toolkit),
    empty when it did not; ``journal`` is Chaos Toolkit's journal, trimmed, and ``source``
    the experiment file (or that the gate generated it).
    """

    experiment: str
    target: str
    candidates: tuple[str, ...]
    before_window: Window
    before: HypothesisResult
    kills: tuple[Kill, ...] = ()
    after_window: Window | None = None
    after: HypothesisResult | None = None
    transition: Transition | None = None
    method: tuple[ActivityRun, ...] = ()
    rollbacks: tuple[ActivityRun, ...] = ()
    stopped: str = ""
    source: str = ""
    journal: Mapping[str, Any] | None = None

    @property
    def reason(self) -> str:
        """Why the gate fails, as a stage reason, or "" when it passes: the run stopped
        short (``ChaosInterrupted``), the steady state did not hold before
        (``SteadyStateNotMet``), an action of the method failed (``ChaosMethodFailed``),
        the steady state did not hold after (``ChaosDeviated``) or a rollback failed
        (``ChaosRollbackFailed``), in that order."""
        if self.stopped:
            return "ChaosInterrupted"
        if not self.before.met:
            return "SteadyStateNotMet"
        if any(not a.succeeded for a in self.method):
            return "ChaosMethodFailed"
        if self.after is None:
            return "ChaosInterrupted"
        if not self.after.met:
            return "ChaosDeviated"
        if any(not r.succeeded for r in self.rollbacks):
            return "ChaosRollbackFailed"
        return ""

    @property
    def verdict(self) -> Verdict:
        """Chaos Toolkit's outcome: ``passed`` (even when a rollback failed afterwards,
        which :attr:`reason` tells), ``deviated``, or ``aborted`` for anything that left
        the hypothesis unjudged after a method that ran as written."""
        reason = self.reason
        if reason in ("", "ChaosRollbackFailed"):
            return "passed"
        return "deviated" if reason == "ChaosDeviated" else "aborted"

    def summary(self) -> str:
        """One line: the verdict and why."""
        reason = self.reason
        failed_rollbacks = "".join(f"; rollback {r.describe()}" for r in self.rollbacks
                                   if not r.succeeded)
        if reason == "ChaosInterrupted":
            return f"aborted: {self.stopped or 'the hypothesis was not judged after the method'}"
        if reason == "SteadyStateNotMet":
            return (f"aborted: the steady state did not hold before the method, nothing "
                    f"was done: {self.before.describe()}{failed_rollbacks}")
        if reason == "ChaosMethodFailed":
            failed = next(a for a in self.method if not a.succeeded)
            return f"aborted: {failed.describe()}{failed_rollbacks}"
        assert self.after is not None  # every other reason judged the hypothesis after
        return f"{self.verdict}: {self._done()}; then {self.after.describe()}{failed_rollbacks}"

    def _done(self) -> str:
        """What the method did: the pods it killed, else the actions it ran."""
        if self.kills:
            killed = (f"killed {len(self.kills)} of {len(self.candidates)} pod"
                      f"{'s' if len(self.candidates) != 1 else ''} "
                      f"({', '.join(k.pod for k in self.kills)})")
            return killed if len(self.method) < 2 else (
                f"{killed} (method: {', '.join(a.name for a in self.method)})")
        if self.method:
            return f"ran {', '.join(a.name for a in self.method)}"
        return "ran no method"

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able data (dicts, lists, strings, numbers, ``None``)."""
        data = {
            "experiment": self.experiment,
            "target": self.target,
            "verdict": self.verdict,
            "reason": self.reason,
            "summary": self.summary(),
            "candidates": list(self.candidates),
            "before": {"window": self.before_window.to_json(), **self.before.to_json()},
            "kills": [{"pod": k.pod, "at_seconds": round(k.at_seconds, 3)}
                      for k in self.kills],
            "transition": None if self.transition is None else self.transition.to_json(),
            "after": None if self.after is None or self.after_window is None else
            {"window": self.after_window.to_json(), **self.after.to_json()},
            "method": [a.to_json() for a in self.method],
            "rollbacks": [r.to_json() for r in self.rollbacks],
            "stopped": self.stopped,
            "source": self.source,
        }
        if self.journal is not None:
            data["journal"] = dict(self.journal)
        return data


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"
