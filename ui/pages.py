"""The server-rendered pages: sign-in, the run list and a run's detail with its actions.

Pages are Jinja2 templates rendered from the store; ``static/app.js`` keeps them live
over SSE. Forms post back here with the session's CSRF token; destructive actions
(reject) go through a confirmation page first. An action is carried out by the same
function of :mod:`ui.actions` the API calls (which audits it); its outcome or refusal is
left as a message for the page the browser is sent to.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from shipyard.domain.access import Role
from shipyard.domain.dora import DEFAULT_WINDOWS
from shipyard.domain.redaction import redact_text
from shipyard.domain.states import State
from shipyard.domain.throttle import Lockout, SignInThrottle
from shipyard.settings import Settings
from shipyard.store import (
    Accounts,
    AmbiguousRunId,
    Ledger,
    RunNotFound,
    RunRecord,
    Store,
)
from shipyard.store.browse import BadCursor, RunBrowser, RunFilters
from shipyard.store.sessions import Sessions
from stages.chaos import ChaosResult
from ui import actions, presentation
from ui.auth import (
    Principal,
    browser_token,
    check_csrf,
    csrf_token,
    page_principal,
    principal_of,
    remember_browser,
    session_of,
    sign_in,
    sign_out,
    valid_csrf,
)
from ui.charts import box_plots, chaos_timeline, series_chart
from ui.dag import layout_dag
from ui.environments import read_board
from ui.releases import ReleaseComparison, ReleaseNotFound, compare_releases, production_dora

__all__ = ["router", "templates"]

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
templates.env.globals.update(
    badge=presentation.badge, duration_text=presentation.duration_text,
    pace=presentation.pace)
# Messages and logs can quote a repository URL; none may show its credentials.
templates.env.filters["redact"] = redact_text

router = APIRouter(include_in_schema=False)

ViewerPage = Annotated[Principal, Depends(page_principal(Role.VIEWER))]
DeployerPage = Annotated[Principal, Depends(page_principal(Role.DEPLOYER))]
RUNS_PER_PAGE = 50
_THROTTLE_LOCK = threading.Lock()  # sign-ins run in the thread pool
_BADGES_JSON = json.dumps(presentation.STATE_BADGES, ensure_ascii=False)


def render(request: Request, name: str, context: dict[str, Any], *,
           status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    """A page with what every page needs: who is signed in, the CSRF token, the time,
    and the messages left for it (each shown once)."""
    store: Store = request.app.state.store
    now = store.clock()
    base = {"principal": principal_of(request), "csrf": csrf_token(request),
            "badges_json": _BADGES_JSON, "flashes": _take_flashes(request),
            "since_text": lambda at: presentation.since_text(at, now),
            "run_seconds": lambda run: _seconds(run.started_at, run.finished_at, now),
            "stage_seconds": lambda s: _seconds(s.started_at, s.finished_at, now)}
    response = templates.TemplateResponse(request, name, {**base, **context},
                                          status_code=status_code, headers=headers)
    remember_browser(request, response)
    return response


def flash(request: Request, text: str, kind: str = "ok") -> None:
    """Leave a message for the session's next page (kept with the session in the store)."""
    token = browser_token(request)
    if token and session_of(request) is not None:
        sessions: Sessions = request.app.state.sessions
        sessions.add_flash(token, {"text": redact_text(text), "kind": kind})


def _take_flashes(request: Request) -> list[dict[str, Any]]:
    session = session_of(request)
    token = browser_token(request)
    if session is None or token is None or not session.flashes:
        return []  # the common case costs no write
    sessions: Sessions = request.app.state.sessions
    return sessions.take_flashes(token)


def _seconds(started: datetime | None, finished: datetime | None,
             now: datetime) -> float | None:
    if started is None:
        return None
    return ((finished or now) - started).total_seconds()


def _safe_next(target: str) -> str:
    """Only a path on this site: an open redirect would send a signed-in user anywhere."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/runs"
    return target


# -- signing in ---------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/runs") -> Response:
    return render(request, "login.html", {"next_path": _safe_next(next), "username": "",
                                          "error": ""})


@router.post("/login")
def login(request: Request, username: Annotated[str, Form()],
          password: Annotated[str, Form()], csrf_token_: Annotated[str, Form(
              alias="csrf_token")] = "", next: Annotated[str, Form()] = "/runs",
          ) -> Response:
    """Sign in. The login form carries a CSRF token too (login CSRF: signing a victim in
    as the attacker). Failures are counted per name and per source address
    (:class:`SignInThrottle`); a locked name or address is refused before the password is
    even checked."""
    if not valid_csrf(request, csrf_token_):
        return render(request, "login.html", {"next_path": _safe_next(next),
                                              "username": username,
                                              "error": "The form was stale; try again."},
                      status_code=403)
    name = username.strip()
    address = request.client.host if request.client else None
    throttle: SignInThrottle = request.app.state.sign_in_throttle
    with _THROTTLE_LOCK:
        lockout = throttle.locked(name, address, time.monotonic())
    if lockout is not None:
        return _locked_out(request, lockout, name, username, next)
    accounts: Accounts = request.app.state.accounts
    user = accounts.authenticate(name, password)
    if user is None:
        with _THROTTLE_LOCK:
            throttle.failed(name, address, time.monotonic())
        return render(request, "login.html", {
            "next_path": _safe_next(next), "username": username,
            "error": "Wrong username or password, or the account is disabled."},
            status_code=401)
    with _THROTTLE_LOCK:
        throttle.succeeded(name)
    response = RedirectResponse(_safe_next(next), status_code=303)
    sign_in(request, response, user.name)
    return response


def _locked_out(request: Request, lockout: Lockout, name: str, username: str,
                next_path: str) -> Response:
    wait = math.ceil(lockout.seconds)
    whom = f"for {name!r}" if lockout.by == "name" else "from your address"
    return render(request, "login.html", {
        "next_path": _safe_next(next_path), "username": username,
        "error": f"Too many failed sign-ins {whom}: try again in {wait} s."},
        status_code=429, headers={"Retry-After": str(wait)})


@router.post("/logout")
def logout(request: Request, csrf_token_: Annotated[str, Form(alias="csrf_token")] = ""
           ) -> Response:
    """Sign out: the session ends in the store, so its open event streams close too."""
    principal = principal_of(request)
    if principal is not None:
        check_csrf(request, principal, csrf_token_)
    response = RedirectResponse("/login", status_code=303)
    sign_out(request, response)
    return response


# -- runs -----------------------------------------------------------------------------------


@router.get("/")
def home() -> Response:
    return RedirectResponse("/runs", status_code=303)


@router.get("/runs")
def runs_page(
    request: Request, principal: ViewerPage,
    app: str = "", status: str = "", branch: str = "", trigger: str = "", pipeline: str = "",
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    store: Store = request.app.state.store
    browser = RunBrowser(store)
    try:
        state = State(status) if status else None
    except ValueError:
        raise HTTPException(422, f"status: {status!r} is no state; use one of "
                            f"{', '.join(s.value for s in State)}") from None
    filters = RunFilters(app=app or None, state=state, branch=branch or None,
                         trigger=trigger or None, pipeline=pipeline or None)
    try:
        page = browser.page(filters, limit=RUNS_PER_PAGE, cursor=cursor)
    except BadCursor as err:
        raise HTTPException(422, str(err)) from None
    query = {k: v for k, v in (("app", app), ("status", status), ("branch", branch),
                               ("trigger", trigger), ("pipeline", pipeline)) if v}
    return render(request, "runs.html", {
        "section": "runs", "runs": page.runs, "filters": filters, "filtered": bool(query),
        "choices": _with_current(_filter_choices(request, browser), filters),
        "states": [s.value for s in State],
        "first_page": cursor is None, "since": f"{browser.last_change_id()}.0",
        "live_query": urlencode(query),
        "first_url": "/runs" + (f"?{urlencode(query)}" if query else ""),
        "next_url": f"/runs?{urlencode({**query, 'cursor': page.next_cursor})}"
        if page.next_cursor else None})


@router.get("/runs/{run_id}/row")
def run_row(request: Request, run_id: str, principal: ViewerPage,
            app: str = "", status: str = "", branch: str = "", trigger: str = "",
            pipeline: str = "") -> Response:
    """One row of the run list, for the live list to add a new run (204 when the run
    does not match the list's filters)."""
    run = _run(request, run_id)
    wanted = {"app": app, "status": status, "branch": branch, "trigger": trigger,
              "pipeline": pipeline}
    actual = {"app": run.app or "", "status": run.state.value, "branch": run.ref or "",
              "trigger": run.trigger, "pipeline": run.pipeline}
    if any(value and actual[key] != value for key, value in wanted.items()):
        return Response(status_code=204)
    return render(request, "_run_row.html", {"run": run})


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, principal: ViewerPage) -> Response:
    store: Store = request.app.state.store
    run = _run(request, run_id)
    browser = RunBrowser(store)
    since = f"{browser.last_change_id()}.{browser.last_log_id()}"
    logs: dict[str, str] = {}
    for chunk in store.read_logs(run.id):
        logs[chunk.stage_ref] = logs.get(chunk.stage_ref, "") + chunk.text
    prefect_ui: str | None = request.app.state.prefect_ui
    return render(request, "run.html", {
        "section": "runs", "run": run, "since": since, "logs": logs,
        "typical": browser.typical_stage_seconds(run.pipeline, run.app),
        "layout": layout_dag(run.stages),
        "stages_by_ref": {s.ref: s for s in run.stages},
        "waiting": [s for s in run.stages if s.state is State.WAITING],
        "may_act": principal.may(Role.DEPLOYER),
        "prefect_url": f"{prefect_ui}/runs/flow-run/{run.prefect_flow_run_id}"
        if prefect_ui and run.prefect_flow_run_id else None})


@router.post("/runs/{run_id}/judgment")
async def judgment_form(
    request: Request, run_id: str, principal: DeployerPage,
    decision: Annotated[str, Form()], comment: Annotated[str, Form()] = "",
    confirmed: Annotated[str, Form()] = "",
    csrf_token_: Annotated[str, Form(alias="csrf_token")] = "",
) -> Response:
    """Approve, or reject after a confirmation page that asks why."""
    check_csrf(request, principal, csrf_token_)
    if decision == "reject" and confirmed != "yes":
        return render(request, "confirm.html", {
            "title": "Reject this judgment?",
            "consequence": "The pipeline fails at this judgment and rolls back what it "
                           "deployed. This cannot be undone; a new release starts over.",
            "action": f"/runs/{run_id}/judgment", "fields": {"decision": "reject"},
            "ask_reason": "Why (recorded with the rejection)", "reason": comment,
            "confirm_label": "✘ Reject", "cancel_url": f"/runs/{run_id}"})
    try:
        answer = await actions.answer(request.app.state.store, request.app.state.settings,
                                      run_id, principal, decision=decision, comment=comment)
    except actions.REFUSALS as refusal:
        flash(request, str(refusal), "error")
    else:
        word = "Approved" if answer.decision == "approve" else "Rejected"
        flash(request, f"{word}: the pipeline goes on within seconds.")
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.get("/runs/{run_id}/canary/{stage_ref}")
def canary_report(request: Request, run_id: str, stage_ref: str,
                  principal: ViewerPage) -> Response:
    """A canary stage's report: the score against the thresholds, and per metric its
    classification, both series over time and as distributions, and the statistics."""
    run = _run(request, run_id)
    stage = next((s for s in run.stages if s.ref == stage_ref), None)
    if stage is None or "metrics" not in (stage.outputs.get("report") or {}):
        raise HTTPException(404, f"run {run.short_id} has no canary report at stage "
                            f"{stage_ref!r}; its run page links the reports it has")
    result = stage.outputs
    report = result["report"]
    charts, distributions = {}, {}
    for name, metric in report["metrics"].items():
        series = {"baseline": metric.get("baseline_values", []),
                  "canary": metric.get("canary_values", [])}
        charts[name] = series_chart(series)
        distributions[name] = box_plots(series)
    return render(request, "canary.html", {
        "section": "runs", "run": run, "result": result, "report": report,
        "charts": charts, "distributions": distributions, "fmt": _number})


@router.get("/runs/{run_id}/chaos/{stage_ref}")
def chaos_report(request: Request, run_id: str, stage_ref: str,
                 principal: ViewerPage) -> Response:
    """A chaos stage's report: the hypothesis before and after, what was killed when, and
    each probe's evidence."""
    run = _run(request, run_id)
    stage = next((s for s in run.stages if s.ref == stage_ref), None)
    try:
        result = ChaosResult.model_validate(stage.outputs if stage else {})
    except ValidationError:
        result = None
    if result is None or "experiment" not in result.report:
        raise HTTPException(404, f"run {run.short_id} has no chaos report at stage "
                            f"{stage_ref!r}; its run page links the reports it has")
    return render(request, "chaos.html", {
        "section": "runs", "run": run, "result": result, "report": result.report,
        "timeline": chaos_timeline(result.report), "fmt": _number})


def _number(value: float | None) -> str:
    """A statistic as it reads best: 4 significant digits, a dash when missing."""
    return "—" if value is None else f"{value:.4g}"


@router.get("/environments")
def environments_page(request: Request, principal: ViewerPage, fragment: bool = False
                      ) -> Response:
    """App by environment: the release, its health, since when, the traffic split and the
    delivery under way. ``fragment`` renders the table alone (the live page swaps it)."""
    board = read_board(request.app.state.store, request.app.state.settings,
                       request.app.state.cluster_cache)
    return render(request, "_board.html" if fragment else "environments.html",
                  {"section": "environments", "board": board, "cluster_cache_seconds":
                   request.app.state.settings.ui_cluster_cache_seconds})


@router.get("/dora")
def dora_page(request: Request, principal: ViewerPage, environment: str | None = None
              ) -> Response:
    """DORA's five metrics per app and overall, 7, 30 and 90 days, with the trend, of
    ``environment`` (default: the production environment)."""
    settings: Settings = request.app.state.settings
    environment = environment or settings.production_environment
    report = production_dora(request.app.state.store, environment)
    return render(request, "dora.html", {
        "section": "dora", "report": report, "environment": environment,
        "windows_order": list(DEFAULT_WINDOWS),
        "seconds": lambda delta: delta.total_seconds() if delta is not None else None,
        "percent": lambda rate: "—" if rate is None else f"{rate * 100:.0f}%"})


@router.get("/apps/{app}/releases")
def releases_page(request: Request, app: str, principal: ViewerPage, env: str = "",
                  from_: Annotated[int | None, Query(alias="from")] = None,
                  to: int | None = None) -> Response:
    """An app's releases, who made each and why, the manifest diff of any two, and (for a
    deployer) a promotion into the production environment from the one before it."""
    store: Store = request.app.state.store
    settings: Settings = request.app.state.settings
    ledger = Ledger(store)
    releases = ledger.releases(app, env or None, limit=200)
    environments = sorted({r.environment for r in ledger.releases(app, limit=500)})
    compared: ReleaseComparison | None = None
    if from_ is not None and to is not None:
        try:
            compared = compare_releases(ledger, app, from_, to)
        except ReleaseNotFound as err:
            raise HTTPException(404, str(err)) from None
    return render(request, "releases.html", {
        "section": "releases", "app": app, "env": env, "releases": releases,
        "environments": environments, "left": compared.left if compared else None,
        "right": compared.right if compared else None,
        "diff": compared.diff if compared else None,
        "line_class": presentation.diff_line_class, "may_act": principal.may(Role.DEPLOYER),
        "production": settings.production_environment,
        "promote_from": settings.pre_production_environment,
        "current": {env: r.id for (name, env), r in ledger.all_current_releases().items()
                    if name == app}})


def _with_current(choices: dict[str, list[str]],
                  filters: RunFilters) -> dict[str, list[str]]:
    """The choices, with each filter's current value among them (a value newer than the
    cached choices must still show as selected)."""
    current = {"app": filters.app, "trigger": filters.trigger, "pipeline": filters.pipeline}
    merged = {}
    for name, values in choices.items():
        value = current.get(name)
        merged[name] = sorted({*values, value}) if value else values
    return merged


CHOICES_SECONDS = 30.0


def _filter_choices(request: Request, browser: RunBrowser) -> dict[str, list[str]]:
    """The filters' choices (apps, triggers, pipelines seen), kept for
    :data:`CHOICES_SECONDS`: they change rarely, and reading them means a pass over every
    run (most of the page's time with 100,000 runs, bench/ui_run_list.py)."""
    cached: tuple[float, dict[str, list[str]]] | None = getattr(
        request.app.state, "filter_choices", None)
    now = time.monotonic()
    if cached is None or cached[0] < now:
        cached = (now + CHOICES_SECONDS, browser.distinct_values())
        request.app.state.filter_choices = cached
    return cached[1]


# -- actions from the pages ------------------------------------------------------------------


async def _act(request: Request, work: Awaitable[RunRecord], done: str, *,
               fallback: str) -> Response:
    """Carry out an action; flash its outcome; go to the run it started or ended, or
    back to ``fallback`` with its refusal."""
    try:
        record = await work
    except actions.REFUSALS as refusal:
        flash(request, str(refusal), "error")
        return RedirectResponse(fallback, status_code=303)
    flash(request, done)
    return RedirectResponse(f"/runs/{record.id}", status_code=303)


@router.post("/runs/{run_id}/cancel")
async def cancel_form(request: Request, run_id: str, principal: DeployerPage,
                      comment: Annotated[str, Form()] = "",
                      confirmed: Annotated[str, Form()] = "",
                      csrf_token_: Annotated[str, Form(alias="csrf_token")] = "") -> Response:
    check_csrf(request, principal, csrf_token_)
    if confirmed != "yes":
        return render(request, "confirm.html", {
            "title": "Cancel this run?",
            "consequence": "Its stages that have not finished are cancelled and its flow "
                           "is stopped. A deploy it had started is left as it is; the next "
                           "run reconciles it.",
            "action": f"/runs/{run_id}/cancel", "fields": {},
            "ask_reason": "Why (recorded with the cancellation)", "reason": comment,
            "confirm_label": "⊘ Cancel the run", "cancel_url": f"/runs/{run_id}"})
    return await _act(request, actions.cancel(request.app.state.store, run_id, principal,
                                              comment), "Cancelled.",
                      fallback=f"/runs/{run_id}")


@router.post("/runs/{run_id}/restart")
async def restart_form(request: Request, run_id: str, principal: DeployerPage,
                       from_stage: Annotated[str, Form()],
                       csrf_token_: Annotated[str, Form(alias="csrf_token")] = "") -> Response:
    check_csrf(request, principal, csrf_token_)
    return await _act(request, actions.restart(request.app.state.store, run_id, principal,
                                               from_stage),
                      f"Restarted from {from_stage}.", fallback=f"/runs/{run_id}")


@router.post("/apps/{app}/promote")
async def promote_form(request: Request, app: str, principal: DeployerPage,
                       version: Annotated[str, Form()] = "",
                       from_env: Annotated[str | None, Form()] = None,
                       to_env: Annotated[str | None, Form()] = None,
                       comment: Annotated[str, Form()] = "",
                       csrf_token_: Annotated[str, Form(alias="csrf_token")] = "") -> Response:
    check_csrf(request, principal, csrf_token_)
    settings: Settings = request.app.state.settings
    return await _act(request, actions.promote(
        request.app.state.store, settings, app, principal, from_env=from_env,
        to_env=to_env, version=version or None, why=comment),
        f"Promoting {app} to {to_env or settings.production_environment}.",
        fallback=f"/apps/{app}/releases")


@router.post("/apps/{app}/rollback")
async def rollback_form(request: Request, app: str, principal: DeployerPage,
                        environment: Annotated[str | None, Form()] = None,
                        to: Annotated[str, Form()] = "",
                        comment: Annotated[str, Form()] = "",
                        confirmed: Annotated[str, Form()] = "",
                        csrf_token_: Annotated[str, Form(alias="csrf_token")] = "",
                        ) -> Response:
    check_csrf(request, principal, csrf_token_)
    settings: Settings = request.app.state.settings
    environment = environment or settings.production_environment
    if confirmed != "yes" or not comment.strip():
        return render(request, "confirm.html", {
            "title": f"Roll {app} back in {environment}?",
            "consequence": f"{environment} switches back to "
                           f"{'release ' + to if to else 'the previous release'} at once "
                           "while it is warm, else its recorded manifests are applied again.",
            "action": f"/apps/{app}/rollback", "fields": {"environment": environment,
                                                          "to": to},
            "ask_reason": "Why (recorded in the release history)", "reason": comment,
            "confirm_label": "↺ Roll back", "cancel_url": f"/apps/{app}/releases"})
    return await _act(request, actions.roll_back(
        request.app.state.store, settings, app, principal, environment=environment,
        to=to or None, why=comment), f"Rolling {app} back in {environment}.",
        fallback=f"/apps/{app}/releases")


def _run(request: Request, run_id: str) -> RunRecord:
    store: Store = request.app.state.store
    try:
        return store.get_run(run_id)
    except (RunNotFound, AmbiguousRunId) as err:
        raise HTTPException(404, str(err)) from None
