"""Starting a pipeline from outside Prefect (the CLI, the webhook, ``shipyard trigger``)
and following it.

The run is recorded as queued first, with the pipeline's first stages, and then handed to
Prefect (:mod:`pipelines.handover`: ``run_deployment`` without waiting, the run id as
idempotency key, so a retried hand-over never makes a second flow run). The flow adopts the
recorded run. Following a run reads the store, and asks Prefect too, so a flow run that
crashed before it could record anything does not leave its run queued forever.

A follower does not poll: it reads the store when the store says it changed (PostgreSQL's
``NOTIFY``, :mod:`shipyard.store.notify`) or when Prefect's events websocket reports a state
change of the flow run (its hand-over to a worker, its start, its end). It still reads now
and then (``poll_seconds``) in case a signal was lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

from pipelines.handover import HandOverFailed, OnRefusal, StartDeployment, hand_over
from shipyard.adapters.prefect_api import start_deployment
from shipyard.domain.deployments import FIRST_STAGES
from shipyard.store import RunRecord, Store
from shipyard.store.notify import change_signal

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


async def follow_run(store: Store, run_id: str, *, poll_seconds: float = 2.0,
                     timeout_seconds: float = 3600) -> AsyncIterator[RunRecord]:
    """Yield the run each time it may have changed, until it is final (the last record
    yielded).

    If Prefect reports the flow run final while the run is not (the flow crashed or was
    cancelled before it could record it), the run is failed or cancelled with Prefect's
    message. Raises TimeoutError after ``timeout_seconds``.
    """
    # Prefect's client, imported here: starting a run needs none of it (a second saved).
    from shipyard.adapters.prefect import flow_run_state, watch_flow_run_states

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    changes = change_signal(store.engine)
    heard = asyncio.Event()
    prefect_states: list[str] = []

    def on_state(name: str) -> None:
        prefect_states.append(name)
        heard.set()

    background = [asyncio.create_task(changes.run())]
    watched: str | None = None
    asked_prefect = loop.time()
    try:
        while True:
            record = await asyncio.to_thread(store.get_run, run_id)
            yield record
            if record.state.is_terminal:
                return
            flow_run_id = record.prefect_flow_run_id
            if flow_run_id and watched != flow_run_id:
                watched = flow_run_id
                background.append(asyncio.create_task(
                    watch_flow_run_states(flow_run_id, on_state)))
            if flow_run_id and (not prefect_states or
                                prefect_states[-1].upper() in FINAL_STATE_NAMES or
                                loop.time() - asked_prefect > ASK_PREFECT_SECONDS):
                asked_prefect = loop.time()
                prefect = await flow_run_state(flow_run_id)
                if prefect.final:
                    await asyncio.sleep(0.5)  # the flow's last write may be in flight
                    record = await asyncio.to_thread(store.get_run, run_id)
                    if not record.state.is_terminal:
                        record = await asyncio.to_thread(_settle_orphan, store, record,
                                                         prefect.state, prefect.message)
                    yield record
                    return
            if loop.time() > deadline:
                raise TimeoutError(f"run {record.short_id} still {record.state.value} "
                                   f"after {timeout_seconds:.0f}s")
            await _first_of(changes.wait(poll_seconds), heard.wait(), poll_seconds)
            heard.clear()
            if len(prefect_states) > 1:
                del prefect_states[:-1]
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


FINAL_STATE_NAMES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
ASK_PREFECT_SECONDS = 10.0
"""How often a follower that hears Prefect's events still asks for the flow run's state:
an event lost while the websocket reconnected must not leave it waiting forever."""


async def _first_of(first: Awaitable[Any], second: Awaitable[Any], timeout: float) -> None:
    """Return when either finishes, or after ``timeout``; cancel the other."""
    tasks = [asyncio.ensure_future(first), asyncio.ensure_future(second)]
    _, pending = await asyncio.wait(tasks, timeout=timeout,
                                    return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _settle_orphan(store: Store, record: RunRecord, prefect_state: str,
                   message: str) -> RunRecord:
    if prefect_state == "CANCELLED":
        return store.cancel_run(record.id, reason="FlowCancelled",
                                    message=message or "the Prefect flow run was cancelled")
    return store.finish_run(record.id, error=f"Prefect flow run {prefect_state.lower()}: "
                                             f"{message or 'no message'}")
