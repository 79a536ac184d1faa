"""What a deployer can do from the UI and the API, each written to the audit trail: cancel
a run, restart a run from a stage, promote a version, roll an environment back.

Starting a pipeline goes through :func:`pipelines.launch.launch`, as the CLI does: the run
is recorded queued, then handed to Prefect. The actor is always the signed-in user or the
token's owner.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pipelines.launch import follow_run, launch
from shipyard.adapters.prefect import cancel_flow_run
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.judgment_signature import Route
from shipyard.store import Ledger, RunRecord, Store
from stages.restart import restart_request
from ui.auth import Principal

__all__ = ["ActionRefused", "cancel", "judgment_route", "promote", "restart", "roll_back"]

log = logging.getLogger("shipyard.ui.actions")

SETTLE_SECONDS = 120.0
_background: set[asyncio.Task[None]] = set()


class ActionRefused(ValueError):
    """The action cannot be taken; the message says why and what can (HTTP 409)."""


def _audit(store: Store, principal: Principal, action: str, kind: str, subject: str,
           details: dict[str, Any]) -> None:
    Ledger(store).audit(actor=principal.name, action=action, subject_kind=kind,
                        subject_id=subject, details={**details, "via": principal.via})


def judgment_route(principal: Principal) -> Route:
    """The route a judgment answer from ``principal`` is signed with: a signed-in browser
    session or an API token. Nobody (anonymous) never answers: that needs a deployer."""
    if principal.via == "session":
        return "ui-session"
    if principal.via == "token":
        return "api-token"
    raise ActionRefused("answering a judgment needs a signed-in deployer or an API token")


async def cancel(store: Store, run_id: str, principal: Principal, reason: str) -> RunRecord:
    """Cancel a run that has not ended: in the store at once (its unfinished stages with
    it) and in Prefect (a running flow's process is stopped by its worker). A background
    task follows Prefect until the flow run is final."""
    run = await asyncio.to_thread(store.get_run, run_id)
    if run.state.is_terminal:
        raise ActionRefused(f"run {run.short_id} is {run.state.value} already; only a run "
                            "that has not ended can be cancelled")
    why = reason.strip() or "no reason given"
    message = f"cancelled by {principal.name}: {why}"
    if run.prefect_flow_run_id:
        await cancel_flow_run(run.prefect_flow_run_id, message=message)
    cancelled = await asyncio.to_thread(store.cancel_run, run.id,
                                        reason="CancelledByUser", message=message)
    await asyncio.to_thread(_audit, store, principal, "run.cancel", "run", run.id,
                            {"reason": why, "pipeline": run.pipeline})
    if run.prefect_flow_run_id:
        task = asyncio.create_task(_settle(store, run.id), name=f"settle {run.short_id}")
        _background.add(task)
        task.add_done_callback(_background.discard)
    return cancelled


async def _settle(store: Store, run_id: str) -> None:
    try:
        async for _ in follow_run(store, run_id, timeout_seconds=SETTLE_SECONDS):
            pass
    except Exception:
        log.warning("following cancelled run %s to its end failed", run_id, exc_info=True)


async def restart(store: Store, run_id: str, principal: Principal,
                  from_stage: str) -> RunRecord:
    """A new run of the same pipeline with the same parameters, reusing the stages before
    ``from_stage`` (see :mod:`stages.restart`)."""
    original = await asyncio.to_thread(store.get_run, run_id)
    try:
        request = restart_request(original, from_stage)
    except ValueError as err:
        raise ActionRefused(str(err)) from None
    record = await launch(store, request.pipeline, request.parameters, trigger="restart",
                          actor=principal.name, app=request.app, repo_url=request.repo_url,
                          ref=request.ref, restarted_from=request.restarted_from)
    await asyncio.to_thread(_audit, store, principal, "run.restart", "run", original.id,
                            {"from_stage": from_stage, "new_run": record.id})
    return record


async def promote(store: Store, app: str, principal: Principal, *, from_env: str,
                  to_env: str, version: str | None, why: str) -> RunRecord:
    """Run the production part for a version that passed ``from_env``."""
    validate_app_name(app)
    record = await launch(store, "promote", {
        "app": app, "from_env": from_env, "to_env": to_env, "version": version or None,
        "why": why}, trigger="ui", actor=principal.name, app=app)
    await asyncio.to_thread(_audit, store, principal, "release.promote", "app", app,
                            {"from": from_env, "to": to_env, "version": version,
                             "why": why, "run": record.id})
    return record


async def roll_back(store: Store, app: str, principal: Principal, *, environment: str,
                    to: str | None, why: str) -> RunRecord:
    """Switch ``environment`` back to an earlier release of ``app`` (the previous one
    unless ``to`` names a version or release id)."""
    validate_app_name(app)
    if not why.strip():
        raise ActionRefused("a rollback needs a reason: the release history records why")
    record = await launch(store, "rollback", {
        "app": app, "environment": environment, "to": to or None, "why": why,
        "revert": False}, trigger="ui", actor=principal.name, app=app)
    await asyncio.to_thread(_audit, store, principal, "release.rollback", "app", app,
                            {"environment": environment, "to": to, "why": why,
                             "run": record.id})
    return record
