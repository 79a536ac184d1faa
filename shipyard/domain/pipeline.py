"""A pipeline run's stages as a DAG, Spinnaker-style.

Each stage names the stages it requires (Spinnaker's ``requisiteStageRefIds``). Stages with
no requirement start at once; several stages requiring one make parallel branches; one stage
requiring several is a join. A stage runs only when every requirement succeeded; a stage
whose requirement failed, was cancelled or was itself skipped is skipped, with a reason that
names the requirement.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter

from shipyard.domain.states import State

__all__ = [
    "InvalidPipeline",
    "PipelineGraph",
    "SkipDecision",
    "StageSpec",
    "run_outcome",
]

_STAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,99}$")

# States of a requirement that mean its dependents can never run.
_BLOCKING = frozenset({State.FAILED, State.CANCELLED, State.SKIPPED, State.ROLLED_BACK})


class InvalidPipeline(ValueError):
    """The stage graph is malformed: a bad ref, a duplicate, an unknown requirement, a cycle."""


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage of a pipeline definition.

    ``ref`` is unique within the pipeline (lowercase letters, digits and ``.:_-``, e.g.
    ``test:gateway``); ``requires`` lists the refs that must succeed first.
    """

    ref: str
    requires: tuple[str, ...] = ()
    name: str = ""

    @property
    def title(self) -> str:
        """The name shown to people, defaulting to the ref."""
        return self.name or self.ref


@dataclass(frozen=True, slots=True)
class SkipDecision:
    """A queued stage that can never run, and why."""

    ref: str
    blocked_by: str
    blocker_state: State

    @property
    def message(self) -> str:
        return f"skipped because requirement {self.blocked_by!r} {self.blocker_state.value}"


@dataclass(frozen=True)
class PipelineGraph:
    """A validated stage DAG. Build it with :meth:`of`, which checks the graph."""

    stages: tuple[StageSpec, ...]
    _by_ref: Mapping[str, StageSpec] = field(repr=False, compare=False)
    _order: tuple[str, ...] = field(repr=False, compare=False)

    @classmethod
    def of(cls, stages: Iterable[StageSpec]) -> PipelineGraph:
        """Validate ``stages`` and return the graph; raise :class:`InvalidPipeline`."""
        specs = tuple(stages)
        if not specs:
            raise InvalidPipeline("a pipeline needs at least one stage")
        by_ref: dict[str, StageSpec] = {}
        for spec in specs:
            if not _STAGE_REF.fullmatch(spec.ref):
                raise InvalidPipeline(
                    f"stage ref {spec.ref!r} is invalid: use lowercase letters, digits and "
                    "'.', ':', '_', '-' (at most 100 characters), e.g. 'test:gateway'"
                )
            if spec.ref in by_ref:
                raise InvalidPipeline(f"stage ref {spec.ref!r} appears twice; refs must be unique")
            by_ref[spec.ref] = spec
        for spec in specs:
            for required in spec.requires:
                if required not in by_ref:
                    raise InvalidPipeline(
                        f"stage {spec.ref!r} requires {required!r}, which is not a stage of "
                        f"this pipeline (stages: {', '.join(sorted(by_ref))})"
                    )
                if required == spec.ref:
                    raise InvalidPipeline(f"stage {spec.ref!r} requires itself")
        sorter = TopologicalSorter({s.ref: s.requires for s in specs})
        try:
            order = tuple(sorter.static_order())
        except CycleError as err:
            cycle = " -> ".join(err.args[1])
            raise InvalidPipeline(f"stage requirements form a cycle: {cycle}") from err
        return cls(stages=specs, _by_ref=by_ref, _order=order)

    def __getitem__(self, ref: str) -> StageSpec:
        return self._by_ref[ref]

    def __contains__(self, ref: object) -> bool:
        return ref in self._by_ref

    @property
    def order(self) -> tuple[str, ...]:
        """Every ref, each after all of its requirements."""
        return self._order

    def dependents(self, ref: str) -> tuple[str, ...]:
        """Stages that list ``ref`` directly among their requirements, in graph order."""
        return tuple(r for r in self._order if ref in self._by_ref[r].requires)

    def downstream(self, ref: str) -> frozenset[str]:
        """``ref`` and every stage that requires it, directly or through others: what a
        restart from ``ref`` runs again."""
        found, pending = {ref}, [ref]
        while pending:
            for dependent in self.dependents(pending.pop()):
                if dependent not in found:
                    found.add(dependent)
                    pending.append(dependent)
        return frozenset(found)

    def ready(self, states: Mapping[str, State]) -> tuple[str, ...]:
        """Queued stages whose requirements have all succeeded: these may start now."""
        return tuple(
            ref
            for ref in self._order
            if states.get(ref, State.QUEUED) is State.QUEUED
            and all(states.get(req) is State.SUCCEEDED for req in self._by_ref[ref].requires)
        )

    def skips(self, states: Mapping[str, State]) -> tuple[SkipDecision, ...]:
        """Queued stages that can never run given ``states``, transitively.

        A stage downstream of one that will be skipped is skipped too, naming the stage
        directly above it, so the chain of reasons reads like the graph.
        """
        effective = {ref: states.get(ref, State.QUEUED) for ref in self._order}
        decisions: list[SkipDecision] = []
        for ref in self._order:  # graph order: a requirement is decided before its dependents
            if effective[ref] is not State.QUEUED:
                continue
            for required in self._by_ref[ref].requires:
                blocker = effective[required]
                if blocker in _BLOCKING:
                    decisions.append(SkipDecision(ref, required, blocker))
                    effective[ref] = State.SKIPPED
                    break
        return tuple(decisions)


def run_outcome(states: Sequence[State]) -> State | None:
    """The state a run ends in once every stage is final, or None while work remains.

    Any failure fails the run; otherwise any cancellation cancels it; a run whose stages
    all succeeded or were skipped by a ``when`` condition succeeded; a run whose deploys
    were all rolled back is rolled back.
    """
    if not states or any(not s.is_terminal for s in states):
        return None
    if State.FAILED in states:
        return State.FAILED
    if State.CANCELLED in states:
        return State.CANCELLED
    if State.ROLLED_BACK in states:
        return State.ROLLED_BACK
    return State.SUCCEEDED
