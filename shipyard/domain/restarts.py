"""What a restart from a stage runs again (pure: plain stage data in, refs out).

Jenkins restarts a declarative pipeline from a top-level stage and reuses what came
before. A delivery needs more care: what the restarted run left standing may be reused,
but what it undid, never finished or judged must run again. So a restart runs again:

* the chosen stage and everything that requires it, directly or through others;
* every stage that did not succeed in the restarted run (failed, rolled back, skipped,
  cancelled), and everything that requires it: a deploy the run's rollback undid is
  deployed again before the canary that needs it.

Which stages may never be reused at all (a checkout, a lock, a verdict) is the stage's own
business (``reusable=False`` in :mod:`stages.runtime`), not this plan's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shipyard.domain.pipeline import PipelineGraph, StageSpec
from shipyard.domain.states import State

__all__ = ["RESTARTABLE", "RecordedStage", "RestartRefused", "stages_to_rerun"]

RESTARTABLE = ("ci", "cd", "release", "promote", "rollback")


class RestartRefused(ValueError):
    """The run cannot be restarted from that stage; the message says why and what can."""


@dataclass(frozen=True, slots=True)
class RecordedStage:
    """A stage of the run being restarted, as it ended."""

    ref: str
    requires: tuple[str, ...]
    state: State


def stages_to_rerun(run_label: str, pipeline: str, run_state: State,
                    stages: Sequence[RecordedStage], start: str) -> frozenset[str]:
    """The refs a restart of the run (``run_label`` names it in messages) from ``start``
    runs again; :class:`RestartRefused` when it cannot be restarted from there."""
    refs = [s.ref for s in stages]
    if pipeline not in RESTARTABLE:
        raise RestartRefused(f"run {run_label} is a {pipeline} run; a restart is for "
                             f"{', '.join(RESTARTABLE)} runs")
    if not run_state.is_terminal:
        raise RestartRefused(f"run {run_label} is {run_state.value}; restart a run once it "
                             f"has ended (its stages: {', '.join(refs)})")
    if start not in refs:
        raise RestartRefused(f"run {run_label} has no stage {start!r}; its stages are: "
                             f"{', '.join(refs)}")
    graph = PipelineGraph.of(StageSpec(s.ref, s.requires) for s in stages)
    seeds = [start, *(s.ref for s in stages if s.state is not State.SUCCEEDED)]
    return _closure(graph, seeds)


def _closure(graph: PipelineGraph, seeds: Iterable[str]) -> frozenset[str]:
    found: set[str] = set()
    for seed in seeds:
        if seed not in found:
            found |= graph.downstream(seed)
    return frozenset(found)
