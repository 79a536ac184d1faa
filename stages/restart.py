"""Restart from a stage (Jenkins's "restart from stage"): a new run of the same pipeline at
the same commit with the same parameters, in which the stages before the chosen one are
not run again: their outputs (test results, image references, digests) are taken from the
run being restarted, recorded as succeeded with reason ``Reused``. The chosen stage and
everything downstream of it run again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from shipyard.domain.pipeline import PipelineGraph, StageSpec
from shipyard.domain.states import State
from shipyard.store import RunRecord
from stages.runtime import RunContext, StageResult, open_store

__all__ = ["Restart", "RestartRefused", "check_restart", "restart_parameters"]

R = TypeVar("R", bound=StageResult)


class RestartRefused(ValueError):
    """The run cannot be restarted from that stage; the message says why and what can."""


def check_restart(original: RunRecord, stage: str) -> frozenset[str]:
    """The stages a restart of ``original`` from ``stage`` runs again; raise
    :class:`RestartRefused` when that is not possible."""
    refs = [s.ref for s in original.stages]
    if not original.state.is_terminal:
        raise RestartRefused(f"run {original.short_id} is {original.state.value}; restart a "
                             "run once it has ended")
    if stage not in refs:
        raise RestartRefused(f"run {original.short_id} has no stage {stage!r}; its stages "
                             f"are: {', '.join(refs)}")
    if not original.commit_sha:
        raise RestartRefused(f"run {original.short_id} never checked a commit out; start "
                             "it again instead")
    graph = PipelineGraph.of(StageSpec(s.ref, s.requires) for s in original.stages)
    return graph.downstream(stage)


def restart_parameters(original: RunRecord, stage: str) -> dict[str, Any]:
    """The parameters of a new ci run restarting ``original`` from ``stage``: the same
    ones, at the commit it checked out; :class:`RestartRefused` when it cannot be."""
    if original.pipeline != "ci":
        raise RestartRefused(f"run {original.short_id} is a {original.pipeline} run; restart "
                             "from a stage is for ci runs (start the others again)")
    check_restart(original, stage)
    return {**original.parameters, "repo": original.repo_url, "ref": original.commit_sha,
            "restart_of": original.id, "restart_from": stage}


@dataclass(frozen=True)
class Restart:
    """How a run treats its stages: run them, or reuse the restarted run's outputs."""

    run: RunContext
    original: RunRecord | None = None
    rerun: frozenset[str] = frozenset()

    @classmethod
    async def of(cls, run: RunContext, restart_of: str | None,
                 restart_from: str | None) -> Restart:
        if restart_of is None or restart_from is None:
            return cls(run)
        original = await asyncio.to_thread(open_store().get_run, restart_of)
        return cls(run, original, check_restart(original, restart_from))

    async def stage(self, ref: str, result: type[R], call: Callable[[], Awaitable[R]]) -> R:
        """Reuse ``ref``'s outputs from the restarted run when it succeeded there and lies
        before the restart point; otherwise run it (``call``)."""
        if self.original is not None and ref not in self.rerun:
            before = next((s for s in self.original.stages if s.ref == ref), None)
            if before is not None and before.state is State.SUCCEEDED:
                store = await asyncio.to_thread(open_store)
                message = f"reused from run {self.original.short_id}: {before.message}"
                await asyncio.to_thread(store.transition_stage, self.run.run_id, ref,
                                        State.RUNNING, reason="Reused", message=message)
                await asyncio.to_thread(store.transition_stage, self.run.run_id, ref,
                                        State.SUCCEEDED, reason="Reused", message=message,
                                        outputs=before.outputs)
                return result.model_validate(before.outputs)
        return await call()
