"""What a deployer can do from the UI and the API: answer a judgment, cancel a run, restart
a run from a stage, promote a version, roll an environment back.

These are the one implementation of each action: the API's routes turn what they return
or raise into JSON, the pages' forms into a message and a redirect. The routes check who
may act (and the pages the CSRF token) before calling them; the actor is always the
signed-in user or the token's owner, never what a request says. Each action but the
judgment writes its audit entry here; the judgment stage writes its own when it takes the
answer.

Starting a pipeline goes through :func:`pipelines.launch.launch`, as the CLI does: the run
is recorded queued, then handed to Prefect. An action that cannot be taken raises one of
:data:`REFUSALS`, whose message says why and what can be done;
:func:`refusal_status` gives its HTTP status.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pipelines.handover import HandOverFailed
from pipelines.launch import follow_run, launch
from shipyard.adapters.prefect import PrefectError, PrefectUnavailable, cancel_flow_run
from shipyard.adapters.secret_files import PrivateFileError
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.delivery_options import DeliveryOptions
from shipyard.domain.judgment_signature import Route
from shipyard.settings import Settings
from shipyard.store import AmbiguousRunId, Ledger, RunNotFound, RunRecord, Store
from stages.judgment import judgment_key
from stages.judgments_service import InvalidAnswer, JudgmentAnswer, JudgmentError, answer_judgment
from stages.restart import restart_request
from ui.auth import Principal

__all__ = ["REFUSALS", "ActionRefused", "JudgmentKeyUnreadable", "NotPermitted", "answer",
           "cancel", "judgment_route", "promote", "refusal_status", "restart", "roll_back"]

log = logging.getLogger("shipyard.ui.actions")

SETTLE_SECONDS = 120.0
_background: set[asyncio.Task[None]] = set()


class ActionRefused(ValueError):
    """The action cannot be taken; the message says why and what can (HTTP 409)."""


class NotPermitted(ActionRefused):
    """Whoever asks may not take the action this way (HTTP 403)."""


class JudgmentKeyUnreadable(RuntimeError):
    """The key that signs judgment answers cannot be read; the ui's log says why, the
    message does not (it would name a file on the server) (HTTP 500)."""


_STATUS_OF_REFUSAL: tuple[tuple[type[Exception], int], ...] = (
    (RunNotFound, 404), (AmbiguousRunId, 404),
    (NotPermitted, 403), (ActionRefused, 409),
    (InvalidAnswer, 422), (JudgmentError, 409),
    (JudgmentKeyUnreadable, 500),
    (HandOverFailed, 503), (PrefectUnavailable, 503), (PrefectError, 502),
    (ValueError, 422),  # a malformed input: an app name, a pipeline
)
"""Each refusal an action may end in and its HTTP status, a subclass before its base."""

REFUSALS: tuple[type[Exception], ...] = tuple(kind for kind, _ in _STATUS_OF_REFUSAL)
"""What an action raises when it cannot be taken, its message fit to show to whoever asked.
Anything else is a fault: the application answers 500 and logs it."""


def refusal_status(refusal: Exception) -> int:
    """The HTTP status of one of :data:`REFUSALS`: 404 no such run, 403 not allowed this
    way, 409 not now (the run's state), 422 a malformed request, 500 the judgment key is
    unreadable, 502 or 503 Prefect did not take it."""
    for kind, status in _STATUS_OF_REFUSAL:
        if isinstance(refusal, kind):
            return status
    raise TypeError(f"{type(refusal).__name__} is not one of the actions' refusals")


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
    raise NotPermitted("answering a judgment needs a signed-in deployer or an API token")


async def answer(store: Store, settings: Settings, run_id: str, principal: Principal, *,
                 decision: str, comment: str) -> JudgmentAnswer:
    """Approve or reject the manual judgment run ``run_id`` (or a run it started) waits
    for, as ``principal``, signed for the route it came by: the answer Prefect took (the
    waiting flow records it and goes on within seconds).

    Raises :class:`NotPermitted`, :class:`JudgmentKeyUnreadable`, and the refusals of
    :func:`stages.judgments_service.answer_judgment`.
    """
    route = judgment_route(principal)
    try:
        key = await asyncio.to_thread(judgment_key, settings)
    except PrivateFileError as err:
        log.error("cannot sign a judgment answer: %s", err)
        raise JudgmentKeyUnreadable("Shipyard's judgment key cannot be read; the ui's log "
                                    "says why") from None
    # The judgment stage writes the audit entry when it takes the answer, whoever gave it
    # (the CLI, the API, Prefect's UI): writing one here too would count it twice.
    return await answer_judgment(store, run_id, decision, actor=principal.name, route=route,
                                 key=key, comment=comment)


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


async def promote(store: Store, settings: Settings, app: str, principal: Principal, *,
                  from_env: str | None, to_env: str | None, version: str | None,
                  why: str) -> RunRecord:
    """Deliver into ``to_env`` (default: the production environment) a version that passed
    ``from_env`` (default: the environment before ``to_env`` in the settings).

    Raises :class:`ActionRefused` when ``to_env`` is the first environment and no
    ``from_env`` is named, and ValueError for an environment the settings do not list.
    """
    validate_app_name(app)
    to_env = to_env or settings.production_environment
    from_env = from_env or settings.environment_before(to_env)
    if from_env is None:
        raise ActionRefused(f"{to_env} is the first of SHIPYARD_ENVIRONMENTS: no environment "
                            "comes before it to promote from; name the environment to promote from")
    record = await launch(store, "promote", {
        "app": app, "from_env": from_env, "to_env": to_env, "version": version or None,
        "options": DeliveryOptions(why=why).as_parameter()}, trigger="ui",
        actor=principal.name, app=app)
    await asyncio.to_thread(_audit, store, principal, "release.promote", "app", app,
                            {"from": from_env, "to": to_env, "version": version,
                             "why": why, "run": record.id})
    return record


async def roll_back(store: Store, settings: Settings, app: str, principal: Principal, *,
                    environment: str | None, to: str | None, why: str) -> RunRecord:
    """Switch ``environment`` (default: the production environment) back to an earlier
    release of ``app`` (the previous one unless ``to`` names a version or release id)."""
    validate_app_name(app)
    if not why.strip():
        raise ActionRefused("a rollback needs a reason: the release history records why")
    environment = environment or settings.production_environment
    record = await launch(store, "rollback", {
        "app": app, "environment": environment, "to": to or None, "why": why,
        "revert": False}, trigger="ui", actor=principal.name, app=app)
    await asyncio.to_thread(_audit, store, principal, "release.rollback", "app", app,
                            {"environment": environment, "to": to, "why": why,
                             "run": record.id})
    return record
