"""The REST API under ``/api``: runs, their stages and logs, live events, and answers to
manual judgments. Documented at ``/docs`` (OpenAPI at ``/openapi.json``).

Reads need the viewer role, actions the deployer role (see :mod:`ui.auth`); the actor
of an action is whoever is signed in or owns the token, never what the body says.
Credentials in repository URLs are hidden in every answer (runs' URLs and parameters,
messages, logs, stage outputs, events: :mod:`shipyard.domain.redaction`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import fields
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from pipelines.handover import HandOverFailed
from shipyard.domain.access import Role
from shipyard.domain.judgment_signature import Decision, Route
from shipyard.domain.redaction import redact_text, redact_url, redact_values
from shipyard.domain.states import State
from shipyard.domain.stream_slots import RETRY_AFTER_SECONDS, TooManyStreams, stream_identity
from shipyard.settings import Settings
from shipyard.store import AmbiguousRunId, Ledger, RunNotFound, RunRecord, Store
from shipyard.store.browse import BadCursor, RunBrowser, RunFilters
from ui import actions
from ui.auth import Principal, api_principal
from ui.environments import read_board
from ui.live import ChangeFeed, parse_since, sse_stream
from ui.releases import ReleaseNotFound, compare_releases, production_dora

__all__ = ["router"]


class ErrorView(BaseModel):
    """A refusal: what is wrong and what to do about it."""

    error: str
    run_id: str | None = Field(default=None, description="the run an action recorded but "
                               "Prefect did not take (503 or 502)")


_ERRORS = {
    400: "the body is not JSON (nor UTF-8)",
    401: "nobody: sign in, or send 'Authorization: Bearer shy_...'",
    403: "the role is too low, or a cookie's request to change something lacks its CSRF "
         "token",
    404: "no such run (or stage, or release)",
    409: "not now: the run has ended, is still going, or waits for no judgment",
    500: "the judgment key cannot be read; the server's log says why",
    502: "Prefect refused the request",
    503: "Prefect cannot be reached (an action's run stays recorded, queued)",
}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of the refusals an operation may answer, each an
    :class:`ErrorView`. A 422 is left out: FastAPI declares it (a malformed request)."""
    return {status: {"model": ErrorView, "description": _ERRORS[status]}
            for status in statuses}


router = APIRouter(prefix="/api", responses=refusals(401, 403))

Viewer = Annotated[Principal, Depends(api_principal(Role.VIEWER))]
Deployer = Annotated[Principal, Depends(api_principal(Role.DEPLOYER))]


class StageView(BaseModel):
    ref: str
    name: str
    requires: list[str]
    state: State
    reason: str
    message: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None = Field(description="so far, while it runs")
    typical_seconds: float | None = Field(
        description="median of this stage's last successful runs of the same pipeline "
        "and app")
    log_lines_dropped: int = Field(
        default=0, description="lines of its log past the store's cap "
        "(SHIPYARD_STAGE_LOG_MAX_LINES); the full log is the run's artifact of kind log")


class RunView(BaseModel):
    id: str
    pipeline: str
    app: str | None
    trigger: str
    actor: str
    repo_url: str | None
    branch: str | None = Field(description="the ref the run was started for")
    commit_sha: str | None
    state: State
    reason: str
    message: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    prefect_flow_run_id: str | None
    restarted_from: str | None


class RunDetail(RunView):
    parameters: dict[str, Any]
    stages: list[StageView]
    prefect_url: str | None


class RunPageView(BaseModel):
    runs: list[RunView]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null "
                                    "on the last page")


class LogChunkView(BaseModel):
    id: int
    stage: str
    at: datetime
    stream: str
    text: str


class JudgmentBody(BaseModel):
    """An answer to a manual judgment."""

    decision: Decision
    comment: str = Field(default="", description="why; required to reject")


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def run_view(run: RunRecord, now: datetime) -> dict[str, Any]:
    end = run.finished_at or (now if run.started_at else None)
    return {"id": run.id, "pipeline": run.pipeline, "app": run.app, "trigger": run.trigger,
            "actor": run.actor,
            "repo_url": redact_url(run.repo_url) if run.repo_url else None,
            "branch": run.ref, "commit_sha": run.commit_sha, "state": run.state,
            "reason": run.reason, "message": redact_text(run.message),
            "created_at": run.created_at,
            "started_at": run.started_at, "finished_at": run.finished_at,
            "duration_seconds": (end - run.started_at).total_seconds()
            if end and run.started_at else None,
            "prefect_flow_run_id": run.prefect_flow_run_id,
            "restarted_from": run.restarted_from}


def run_detail(run: RunRecord, typical: dict[str, float], now: datetime,
               prefect_ui: str | None) -> dict[str, Any]:
    stages = []
    for stage in run.stages:
        end = stage.finished_at or (now if stage.started_at else None)
        stages.append({
            "ref": stage.ref, "name": stage.name, "requires": list(stage.requires),
            "state": stage.state, "reason": stage.reason,
            "message": redact_text(stage.message),
            "attempts": stage.attempts, "started_at": stage.started_at,
            "finished_at": stage.finished_at,
            "duration_seconds": (end - stage.started_at).total_seconds()
            if end and stage.started_at else None,
            "typical_seconds": typical.get(stage.ref),
            "log_lines_dropped": stage.log_lines_dropped})
    prefect_url = (f"{prefect_ui}/runs/flow-run/{run.prefect_flow_run_id}"
                   if prefect_ui and run.prefect_flow_run_id else None)
    return {**run_view(run, now), "parameters": redact_values(run.parameters),
            "stages": stages,
            "prefect_url": prefect_url}


def _get_run(store: Store, run_id: str) -> RunRecord:
    try:
        return store.get_run(run_id)
    except (RunNotFound, AmbiguousRunId) as err:
        raise HTTPException(404, str(err)) from None


@router.get("/runs", response_model=RunPageView, tags=["runs"])
def list_runs(
    request: Request, _: Viewer,
    app: Annotated[str | None, Query(description="only this app's runs")] = None,
    status: Annotated[State | None, Query(description="only runs in this state")] = None,
    branch: Annotated[str | None, Query(description="only runs of this ref")] = None,
    trigger: Annotated[str | None, Query(description="push, manual, restart, ...")] = None,
    pipeline: Annotated[str | None, Query(description="ci, cd, release, ...")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the page before")] = None,
) -> Any:
    """The newest runs first, filtered, one page at a time."""
    store = _store(request)
    try:
        page = RunBrowser(store).page(
            RunFilters(app=app or None, state=status, branch=branch or None,
                       trigger=trigger or None, pipeline=pipeline or None),
            limit=limit, cursor=cursor)
    except BadCursor as err:
        raise HTTPException(422, str(err)) from None
    now = store.clock()
    return {"runs": [run_view(r, now) for r in page.runs], "next_cursor": page.next_cursor}


@router.get("/runs/{run_id}", response_model=RunDetail, tags=["runs"],
            responses=refusals(404))
def get_run(request: Request, run_id: str, _: Viewer) -> Any:
    """A run (by id or a unique prefix of 4+ characters) with its stages."""
    store = _store(request)
    run = _get_run(store, run_id)
    typical = RunBrowser(store).typical_stage_seconds(run.pipeline, run.app)
    return run_detail(run, typical, store.clock(), request.app.state.prefect_ui)


LOG_PAGE = 500
"""Log chunks in one answer unless ``limit`` says otherwise (at most :data:`LOG_PAGE_MAX`)."""
LOG_PAGE_MAX = 1000

_LOG_PAGE_HEADERS = {
    "X-Next-After": {"description": "pass as `after` to read on: the last chunk's id (the "
                     "`after` given when there is none yet)",
                     "schema": {"type": "integer"}},
    "Link": {"description": 'the next page (`rel="next"`), when more chunks are there '
             "already; without it, the log has no more for now",
             "schema": {"type": "string"}},
}


@router.get("/runs/{run_id}/logs", response_model=list[LogChunkView], tags=["runs"],
            responses={200: {"headers": _LOG_PAGE_HEADERS}, **refusals(404)})
def get_logs(request: Request, response: Response, run_id: str, _: Viewer,
             stage: Annotated[str | None, Query(description="one stage's log")] = None,
             after: Annotated[int, Query(ge=0, description="only chunks after this id")] = 0,
             limit: Annotated[int, Query(ge=1, le=LOG_PAGE_MAX,
                                         description="chunks in this page")] = LOG_PAGE,
             ) -> Any:
    """Log chunks, oldest first, one page at a time: pass ``X-Next-After`` (the last id)
    as ``after`` to read on, or follow ``Link`` while it says there is more. A stage's
    log past the cap ends in one chunk of stream ``truncated`` that names the file
    holding it all."""
    store = _store(request)
    run = _get_run(store, run_id)
    try:
        chunks = store.read_logs(run.id, stage, after_id=after, limit=limit + 1)
    except LookupError as err:
        raise HTTPException(404, str(err)) from None
    more, chunks = len(chunks) > limit, chunks[:limit]
    next_after = chunks[-1].id if chunks else after
    response.headers["X-Next-After"] = str(next_after)
    if more:
        query = {**({"stage": stage} if stage is not None else {}),
                 "after": next_after, "limit": limit}
        response.headers["Link"] = (f'</api/runs/{run.id}/logs?{urlencode(query)}>; '
                                    'rel="next"')
    return [{"id": c.id, "stage": c.stage_ref, "at": c.at, "stream": c.stream,
             "text": redact_text(c.text)} for c in chunks]


@router.get("/runs/{run_id}/stages/{stage_ref}/outputs", tags=["runs"],
            responses=refusals(404))
def get_stage_outputs(request: Request, run_id: str, stage_ref: str, _: Viewer) -> Any:
    """What a stage recorded: a canary stage its report (score, verdict, each metric's
    classification, statistics and both series), a chaos stage its evidence, a bake its
    manifests' digests."""
    run = _get_run(_store(request), run_id)
    for stage in run.stages:
        if stage.ref == stage_ref:
            return redact_values(stage.outputs)
    raise HTTPException(404, f"run {run.short_id} has no stage {stage_ref!r}; it has "
                        f"{', '.join(s.ref for s in run.stages)}")


class ReleaseView(BaseModel):
    id: int
    app: str
    version: str
    environment: str
    kind: str
    digest: str
    slot: str
    run_id: str | None
    source_release_id: int | None
    actor: str
    why: str
    created_at: datetime


@router.get("/apps/{app}/releases", response_model=list[ReleaseView], tags=["releases"])
def list_releases(request: Request, app: str, _: Viewer,
                  environment: Annotated[str | None, Query()] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Any:
    """An app's releases, newest first: who, why, which version, how (deploy, promote,
    rollback)."""
    return [{f.name: getattr(r, f.name) for f in fields(r) if f.name != "manifests"}
            for r in Ledger(_store(request)).releases(app, environment, limit=limit)]


class ReleaseDiffView(BaseModel):
    from_: int = Field(alias="from")
    to: int
    diff: list[str] = Field(description="unified diff lines of the two manifests")


@router.get("/apps/{app}/releases/diff", tags=["releases"],
            responses={200: {"model": ReleaseDiffView}, **refusals(404)})
def diff_releases(request: Request, app: str, _: Viewer,
                  from_: Annotated[int, Query(alias="from")], to: int) -> Any:
    """The unified diff of two releases' manifests, as lines."""
    try:
        compared = compare_releases(Ledger(_store(request)), app, from_, to)
    except ReleaseNotFound as err:
        raise HTTPException(404, str(err)) from None
    return {"from": from_, "to": to, "diff": compared.diff}


@router.get("/environments", tags=["releases"])
def get_environments(request: Request, _: Viewer) -> Any:
    """App by environment: the release recorded there, its health in the cluster
    (kubectl's rollout rules), the traffic split between versions, and the delivery
    under way."""
    board = read_board(_store(request), request.app.state.settings,
                       request.app.state.cluster_cache)
    cells = []
    for (app, environment), cell in board.cells.items():
        release = cell.release
        cells.append({
            "app": app, "environment": environment,
            "version": release.version if release else None,
            "release_id": release.id if release else None,
            "since": release.created_at if release else None,
            "health": cell.health, "health_message": cell.health_message,
            "traffic": cell.shares,
            "workloads": [{"name": w.name, "version": w.version, "slot": w.slot,
                           "track": w.track, "ready": w.ready, "desired": w.desired}
                          for w in cell.workloads]})
    return {"apps": board.apps, "environments": board.environments, "cells": cells,
            "under_way": {app: {"run_id": run.id, "pipeline": run.pipeline,
                                "stages": active}
                          for app, (run, active) in board.under_way.items()},
            "cluster_error": board.cluster_error}


@router.get("/dora", tags=["reports"])
def get_dora(request: Request, _: Viewer,
             environment: Annotated[str | None, Query(
                 description="whose deployments count; default: the production "
                 "environment")] = None,
             ) -> Any:
    """DORA's five metrics per app and overall over the last 7, 30 and 90 days, each with
    the window before it and the trend (durations in seconds)."""
    settings: Settings = request.app.state.settings
    return production_dora(_store(request),
                           environment or settings.production_environment).to_json()


_STREAM_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}},
    429: {"model": ErrorView, "description": "the identity (a signed-in user, an API "
          "token, an anonymous viewer's address) holds SHIPYARD_UI_STREAMS_PER_IDENTITY "
          "streams open already: close one (with Retry-After)"},
    503: {"model": ErrorView, "description": "the UI holds as many streams as it serves at "
          "once (with Retry-After)"},
}


@router.get("/events", response_class=StreamingResponse, responses=_STREAM_ANSWERS,
            tags=["runs"])
async def all_events(request: Request, principal: Viewer,
                     since: Annotated[str | None, Query(
                         description="<transition id>.<log id> the page showed")] = None,
                     ) -> Any:
    """Server-sent events: ``run`` and ``stage`` state changes of every run. The stream
    ends with an ``ended`` event within seconds of its session or token ending. One
    identity holds at most ``SHIPYARD_UI_STREAMS_PER_IDENTITY`` streams open (429
    beyond)."""
    return await _stream(request, principal, None, with_logs=False, since=since)


@router.get("/runs/{run_id}/events", response_class=StreamingResponse,
            responses={**_STREAM_ANSWERS, **refusals(404)}, tags=["runs"])
async def run_events(request: Request, run_id: str, principal: Viewer,
                     since: Annotated[str | None, Query()] = None) -> Any:
    """Server-sent events of one run: ``run``, ``stage`` and ``log``; ``ended`` as for
    ``/api/events``."""
    run = await asyncio.to_thread(_get_run, _store(request), run_id)
    return await _stream(request, principal, run.id, with_logs=True, since=since)


async def _stream(request: Request, principal: Principal, run_id: str | None, *,
                  with_logs: bool, since: str | None) -> StreamingResponse:
    feed: ChangeFeed = request.app.state.feed
    resume = parse_since(request.headers.get("last-event-id") or since)
    browser = RunBrowser(_store(request))
    start = (await asyncio.to_thread(browser.last_change_id),
             await asyncio.to_thread(browser.last_log_id))
    identity = stream_identity(principal.via, principal.name, principal.credential,
                               request.client.host if request.client else None)
    try:
        # On the event loop: the feed's wake-up event and its slots are not thread-safe.
        subscription = feed.subscribe(run_id, with_logs=with_logs, start=start,
                                      credential=principal.credential, identity=identity,
                                      client_left=request.is_disconnected)
    except TooManyStreams as refused:
        raise HTTPException(429 if refused.scope == "identity" else 503, str(refused),
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    return StreamingResponse(
        sse_stream(feed, subscription, request.is_disconnected, resume),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class JudgmentAnswerView(BaseModel):
    run_id: str = Field(description="the run whose stage waited")
    stage: str
    subject: str
    decision: Decision
    actor: str
    route: Route
    comment: str
    answered_at: datetime
    asked_run_id: str = Field(description="the run named: the same, or one that started it")


@router.post("/runs/{run_id}/judgment", status_code=202, tags=["actions"],
             responses={202: {"model": JudgmentAnswerView},
                        **refusals(400, 404, 409, 500, 502, 503)})
async def answer_run_judgment(request: Request, run_id: str, body: JudgmentBody,
                              principal: Deployer) -> JSONResponse:
    """Approve or reject the manual judgment run ``run_id`` (or a run it started) waits
    for: 202 with the answer Prefect took (the flow records it and goes on within
    seconds); 404 no such run; 409 not waiting, answered already, or timed out; 422 a
    malformed answer or a rejection without a comment; 503 Prefect unreachable."""
    try:
        answer = await actions.answer(_store(request), request.app.state.settings, run_id,
                                      principal, decision=body.decision, comment=body.comment)
    except actions.REFUSALS as refusal:
        return refusal_response(refusal)
    return JSONResponse(answer.to_json(), status_code=202)


Admin = Annotated[Principal, Depends(api_principal(Role.ADMIN))]


class AuditEntryView(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    subject_kind: str
    subject_id: str
    details: dict[str, Any]


@router.get("/audit", response_model=list[AuditEntryView], tags=["actions"])
def audit_trail(request: Request, _: Admin,
                subject_kind: Annotated[str | None, Query(description="run, app, ...")] = None,
                subject_id: Annotated[str | None, Query()] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
    """Who did what to which thing, and when, newest first (admins only)."""
    entries = Ledger(_store(request)).audit_trail(subject_kind=subject_kind,
                                                  subject_id=subject_id, limit=limit)
    return [{"id": e.id, "at": e.at, "actor": e.actor, "action": e.action,
             "subject_kind": e.subject_kind, "subject_id": e.subject_id,
             "details": e.details} for e in entries]


# -- actions ----------------------------------------------------------------------------------


class ActionView(BaseModel):
    """The run an action started or ended."""

    run_id: str
    pipeline: str
    state: State
    reason: str
    message: str


_ACTION_REFUSALS = refusals(400, 404, 409, 502, 503)


class CancelBody(BaseModel):
    reason: str = Field(default="", description="why; recorded with the cancellation")


class RestartBody(BaseModel):
    from_stage: str = Field(description="the stage to run again, with everything after it")


class PromoteBody(BaseModel):
    from_env: str | None = Field(default=None, description="default: the environment "
                                 "before to_env in SHIPYARD_ENVIRONMENTS")
    to_env: str | None = Field(default=None, description="default: the production "
                               "environment (SHIPYARD_PRODUCTION_ENVIRONMENT)")
    version: str | None = Field(default=None, description="default: what runs in from_env")
    why: str = ""


class RollbackBody(BaseModel):
    environment: str | None = Field(default=None, description="default: the production "
                                    "environment (SHIPYARD_PRODUCTION_ENVIRONMENT)")
    to: str | None = Field(default=None, description="a version or release id; default "
                           "the previous release")
    why: str = Field(description="required: the release history records it")


def refusal_response(refusal: Exception) -> JSONResponse:
    """An action's refusal (one of :data:`ui.actions.REFUSALS`) as JSON: its message, and
    the run a hand-over failed to start."""
    body: dict[str, Any] = {"error": str(refusal)}
    if isinstance(refusal, HandOverFailed):
        body["run_id"] = refusal.run_id
    return JSONResponse(body, status_code=actions.refusal_status(refusal))


async def action_response(work: Awaitable[RunRecord], status: int = 202) -> JSONResponse:
    """Carry out an action: the run it started or ended as JSON, or its refusal."""
    try:
        record = await work
    except actions.REFUSALS as refusal:
        return refusal_response(refusal)
    return JSONResponse({"run_id": record.id, "pipeline": record.pipeline,
                         "state": record.state.value, "reason": record.reason,
                         "message": record.message}, status_code=status)


@router.post("/runs/{run_id}/cancel", status_code=200, tags=["actions"],
             responses={200: {"model": ActionView}, **_ACTION_REFUSALS})
async def cancel_run(request: Request, run_id: str, body: CancelBody,
                     principal: Deployer) -> JSONResponse:
    """Cancel a run that has not ended (409 if it has)."""
    return await action_response(actions.cancel(_store(request), run_id, principal,
                                                body.reason), status=200)


@router.post("/runs/{run_id}/restart", status_code=202, tags=["actions"],
             responses={202: {"model": ActionView}, **_ACTION_REFUSALS})
async def restart_run(request: Request, run_id: str, body: RestartBody,
                      principal: Deployer) -> JSONResponse:
    """Start a new ci run from a stage of an ended one (202 with the new run)."""
    return await action_response(actions.restart(_store(request), run_id, principal,
                                                 body.from_stage))


@router.post("/apps/{app}/promote", status_code=202, tags=["actions"],
             responses={202: {"model": ActionView}, **_ACTION_REFUSALS})
async def promote_app(request: Request, app: str, body: PromoteBody,
                      principal: Deployer) -> JSONResponse:
    """Deliver a version that passed ``from_env`` into ``to_env``: by default into the
    production environment from the one before it (202 with the run)."""
    return await action_response(actions.promote(
        _store(request), request.app.state.settings, app, principal,
        from_env=body.from_env, to_env=body.to_env, version=body.version,
        why=body.why))


@router.post("/apps/{app}/rollback", status_code=202, tags=["actions"],
             responses={202: {"model": ActionView}, **_ACTION_REFUSALS})
async def roll_back_app(request: Request, app: str, body: RollbackBody,
                        principal: Deployer) -> JSONResponse:
    """Switch an environment back to an earlier release (202 with the run)."""
    return await action_response(actions.roll_back(
        _store(request), request.app.state.settings, app, principal,
        environment=body.environment, to=body.to, why=body.why))
