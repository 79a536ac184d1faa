"""Starting a pipeline from outside Prefect (the CLI, the webhook, ``shipyard trigger``)
and following it.

The run is recorded as queued first, with the pipeline's first stages, and then handed to
Prefect (:mod:`pipelines.handover`: ``run_deployment`` without waiting, the run id as
idempotency key, so a retried hand-over never makes a second flow run). The flow adopts the
recorded run. Following a run reads the store, and asks Prefect too, so a flow run that
crashed before it could record anything does not leave its run queued forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from pipelines.handover import HandOverFailed, OnRefusal, StartDeployment, hand_over
from shipyard.adapters.prefect import flow_run_state, start_deployment
from shipyard.domain.deployments import FIRST_STAGES
from shipyard.store import RunRecord, Store

__all__ = ["HandOverFailed", "OnRefusal", "follow_run", "launch"]


async def launch(store: Store, pipeline: str, parameters: Mapping[str, Any], *,
                 trigger: str, actor: str = "", app: str | None = None,
                 repo_url: str | None = None, ref: str | None = None,
                 on_refusal: OnRefusal = OnRefusal.CANCEL,
                 start: StartDeployment = start_deployment,
                 restarted_from: str | None = None) -> RunRecord:
    """Record a queued ``pipeline`` run and hand it to its Prefect deployment.

    Raises :class:`HandOverFailed` if Prefect does not take it, after cancelling the run
    or keeping it queued for the reconciler, as ``on_refusal`` says.
    """
    if pipeline not in FIRST_STAGES:
        raise ValueError(f"pipeline {pipeline!r} does not exist; choose one of "
                         f"{', '.join(FIRST_STAGES)}")
    record = await asyncio.to_thread(
        store.create_run, pipeline, FIRST_STAGES[pipeline], trigger=trigger, actor=actor,
        app=app, repo_url=repo_url, ref=ref, parameters=dict(parameters),
        restarted_from=restarted_from)
    return await hand_over(store, record, on_refusal=on_refusal, start=start)


async def follow_run(store: Store, run_id: str, *, poll_seconds: float = 0.5,
                     timeout_seconds: float = 3600) -> AsyncIterator[RunRecord]:
    """Yield the run each time it is read, until it is final (the last record yielded).

    If Prefect reports the flow run final while the run is not (the flow crashed or was
    cancelled before it could record it), the run is failed or cancelled with Prefect's
    message. Raises TimeoutError after ``timeout_seconds``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while True:
        record = await asyncio.to_thread(store.get_run, run_id)
        yield record
        if record.state.is_terminal:
            return
        if record.prefect_flow_run_id:
            prefect = await flow_run_state(record.prefect_flow_run_id)
            if prefect.final:
                await asyncio.sleep(poll_seconds)  # the flow's last write may be in flight
                record = await asyncio.to_thread(store.get_run, run_id)
                if not record.state.is_terminal:
                    record = await asyncio.to_thread(_settle_orphan, store, record,
                                                     prefect.state, prefect.message)
                yield record
                return
        if loop.time() > deadline:
            raise TimeoutError(f"run {record.short_id} still {record.state.value} after "
                               f"{timeout_seconds:.0f}s")
        await asyncio.sleep(poll_seconds)


def _settle_orphan(store: Store, record: RunRecord, prefect_state: str,
                   message: str) -> RunRecord:
    if prefect_state == "CANCELLED":
        return store.cancel_run(record.id, reason="FlowCancelled",
                                    message=message or "the Prefect flow run was cancelled")
    return store.finish_run(record.id, error=f"Prefect flow run {prefect_state.lower()}: "
                                             f"{message or 'no message'}")
