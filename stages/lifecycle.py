"""A pipeline run's life in the store, seen from inside its Prefect flow.

``begin_run`` records the run (or adopts one recorded earlier, e.g. by the webhook, which
records a queued run before it asks Prefect) and links it to the flow run executing it; a
flow run that Prefect suspended and resumed runs its body again, and adopts its own run
again (see :mod:`stages.judgment`);
``extend_run`` adds stages known only once the run is under way; ``running`` beats the
run's heartbeat while the flow's body runs (see :mod:`pipelines.sweeper`), settles the
run from its stages and raises :class:`PipelineFailed` so Prefect marks the flow run failed
too. Flows call these three; stages record themselves (see :mod:`stages.runtime`), and a
child pipeline is recorded as one stage of its parent (``child_stage``, ``reused_child``).

A run that restarts another (``restart_of``, ``restart_from``) carries, in its
:class:`RunContext`, the stages it runs again; the others reuse the restarted run's outputs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from prefect.runtime import flow_run

from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import RunRecord, Store
from stages.restart import RestartRefused, check_restart
from stages.runtime import (
    RunContext,
    current_settings,
    open_store,
    resumed_pause_keys,
    reuse_outputs,
    run_id_of_pause_keys,
)

__all__ = ["PipelineFailed", "begin_run", "child_stage", "extend_run", "reused_child",
           "running", "skip_stage"]

log = logging.getLogger("shipyard.lifecycle")


class PipelineFailed(RuntimeError):
    """The run ended in a state other than succeeded; the message says why."""

    def __init__(self, run: RunRecord) -> None:
        super().__init__(f"run {run.short_id} {run.state.value}: {run.reason}: {run.message}")
        self.run = run


async def begin_run(
    pipeline: str,
    stages: Iterable[StageSpec],
    *,
    run_id: str | None,
    trigger: str,
    actor: str = "",
    app: str | None = None,
    repo_url: str | None = None,
    ref: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    restart_of: str | None = None,
    restart_from: str | None = None,
) -> RunContext:
    """Record a new queued run with ``stages``, or adopt the queued run ``run_id`` (adding
    ``stages`` it does not have yet), and link it to the current Prefect flow run.

    A flow run resumed after a suspension adopts the run it began before (``run_id``, or
    else the run its pause keys name), as it is, unless that run has ended.

    With ``restart_of`` and ``restart_from``, the run restarts that run from that stage:
    :class:`~stages.restart.RestartRefused` when it cannot be."""
    store = await asyncio.to_thread(open_store)
    specs = tuple(stages)
    linked = str(flow_run.id) if flow_run.id else None
    keys = resumed_pause_keys()
    restart = replace(await asyncio.to_thread(_restart, store, restart_of, restart_from),
                      actor=actor)
    if keys and linked:
        resumed = await asyncio.to_thread(_own_run, store,
                                          run_id or run_id_of_pause_keys(keys), linked)
        if resumed is not None:
            return replace(restart, run_id=resumed)
    if run_id is None:
        # Linked as it is written: a queued run without a flow run is one still waiting
        # to be handed to Prefect (pipelines.handover), which this one is not.
        record = await asyncio.to_thread(
            store.create_run, pipeline, specs, trigger=trigger, actor=actor, app=app,
            repo_url=repo_url, ref=ref, parameters=parameters, prefect_flow_run_id=linked,
            restarted_from=restart.restart_of)
        return replace(restart, run_id=record.id)
    record = await asyncio.to_thread(store.get_run, run_id)
    if record.state is not State.QUEUED:
        raise ValueError(f"run {record.short_id} is {record.state.value}, not queued: "
                         "a run is executed once; restart it to run it again")
    known = {s.ref for s in record.stages}
    missing = [s for s in specs if s.ref not in known]
    if missing:
        record = await asyncio.to_thread(store.add_stages, record.id, missing)
    if linked:
        await asyncio.to_thread(store.link_flow_run, record.id, linked)
    return replace(restart, run_id=record.id)


def _restart(store: Store, restart_of: str | None, restart_from: str | None) -> RunContext:
    """A context (its run id still to be set) carrying what a restart runs again."""
    if restart_of is None and restart_from is None:
        return RunContext("")
    if restart_of is None or restart_from is None:
        raise RestartRefused("a restart names both the run (restart_of) and the stage "
                             "(restart_from)")
    original = store.get_run(restart_of)
    rerun = check_restart(original, restart_from)
    return RunContext("", restart_of=original.id, rerun=tuple(sorted(rerun)))


def _own_run(store: Store, run_id: str | None, flow_run_id: str) -> str | None:
    if run_id is None:
        return None
    record = store.get_run(run_id)
    if record.prefect_flow_run_id != flow_run_id or record.state.is_terminal:
        return None
    return record.id


async def extend_run(run: RunContext, stages: Iterable[StageSpec]) -> None:
    """Add stages to a run under way; the whole graph is validated again. A resumed flow
    run (see :func:`begin_run`) adds only the stages it had not added before."""
    store = await asyncio.to_thread(open_store)
    specs = tuple(stages)
    if resumed_pause_keys():
        known = {s.ref for s in (await asyncio.to_thread(store.get_run, run.run_id)).stages}
        specs = tuple(s for s in specs if s.ref not in known)
    if specs:
        await asyncio.to_thread(store.add_stages, run.run_id, specs)


async def skip_stage(run: RunContext, ref: str, *, reason: str, message: str) -> None:
    """Skip a queued stage that will not run (a ``when`` condition not met); a resumed flow
    run does not skip again what it skipped before."""
    store = await asyncio.to_thread(open_store)
    if resumed_pause_keys() and (
            await asyncio.to_thread(store.get_run, run.run_id)).stage(ref).state is State.SKIPPED:
        return
    await asyncio.to_thread(store.transition_stage, run.run_id, ref, State.SKIPPED,
                            reason=reason, message=message)


@asynccontextmanager
async def running(run: RunContext) -> AsyncIterator[RunContext]:
    """Settle the run when the block ends: from its stages, failed with reason
    ``PipelineError`` if the block itself raised, cancelled if the flow was cancelled.

    Raises :class:`PipelineFailed` unless the run succeeded, so the Prefect flow run fails
    with it and says why.
    """
    store = await asyncio.to_thread(open_store)
    heartbeat = asyncio.create_task(_beat(store, run.run_id,
                                          current_settings().heartbeat_seconds))
    try:
        yield run
    except asyncio.CancelledError:
        await asyncio.shield(asyncio.to_thread(
            store.transition_run, run.run_id, State.CANCELLED, reason="FlowCancelled",
            message="the Prefect flow run was cancelled"))
        raise
    except Exception as err:
        record = await asyncio.to_thread(store.finish_run, run.run_id,
                                         error=f"{type(err).__name__}: {err}")
        raise PipelineFailed(record) from err
    finally:
        heartbeat.cancel()
    record = await asyncio.to_thread(store.finish_run, run.run_id)
    if record.state is not State.SUCCEEDED:
        raise PipelineFailed(record)


async def _beat(store: Store, run_id: str, every_seconds: float) -> None:
    """Note in the store, every ``every_seconds``, that this run's process is alive (the
    sweeper's evidence, :mod:`pipelines.sweeper`). A beat that fails is logged and the
    next one tried: a store that is down for a moment must not fail the run."""
    while True:
        try:
            await asyncio.to_thread(store.beat, run_id)
        except Exception:
            log.warning("run %s: the heartbeat could not be written", run_id[:8],
                        exc_info=True)
        await asyncio.sleep(every_seconds)


async def reused_child(run: RunContext, ref: str) -> dict[str, Any] | None:
    """The outputs of child stage ``ref`` when its child pipeline need not run: this run
    already ran it (a flow run resumed after a suspension runs its body again), or the run
    this one restarts did and ``ref`` lies before the restart point (then it is recorded
    ``Reused`` here). None when the child must run (:func:`child_stage`)."""
    store = await asyncio.to_thread(open_store)
    if resumed_pause_keys():
        own = (await asyncio.to_thread(store.get_run, run.run_id)).stage(ref)
        return dict(own.outputs) if own.state is State.SUCCEEDED else None
    return await reuse_outputs(store, run, ref, dict)


@asynccontextmanager
async def child_stage(run: RunContext, ref: str) -> AsyncIterator[dict[str, Any]]:
    """Record stage ``ref`` of ``run`` around a block that runs a child pipeline (a
    subflow, which records its own run): running on entry, then succeeded with the outputs
    the block put in the yielded dict, or failed with the child's reason."""
    store = await asyncio.to_thread(open_store)
    await asyncio.to_thread(store.transition_stage, run.run_id, ref, State.RUNNING,
                            reason="Started")
    outputs: dict[str, Any] = {}
    try:
        yield outputs
    except asyncio.CancelledError:
        await asyncio.shield(asyncio.to_thread(
            store.transition_stage, run.run_id, ref, State.CANCELLED, reason="Cancelled",
            message="the stage was cancelled"))
        raise
    except PipelineFailed as err:
        child = err.run
        await asyncio.to_thread(
            store.transition_stage, run.run_id, ref, State.FAILED, reason=child.reason,
            message=f"{child.pipeline} run {child.short_id}: {child.message}",
            outputs={**outputs, "child_run_id": child.id})
        raise
    except Exception as err:
        await asyncio.to_thread(store.transition_stage, run.run_id, ref, State.FAILED,
                                reason="Error", message=f"{type(err).__name__}: {err}",
                                outputs=outputs)
        raise
    await asyncio.to_thread(store.transition_stage, run.run_id, ref, State.SUCCEEDED,
                            reason="Succeeded", message=str(outputs.get("summary", "")),
                            outputs=outputs)
