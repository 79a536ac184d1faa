"""Answering a manual judgment: the one piece of logic behind ``shipyard approve|reject`` and
``POST /api/runs/{run_id}/judgment``.

:func:`answer_judgment` finds the judgment a run waits for (the run named, or a child run
it started as a Prefect subflow), checks the answer, and hands it to the waiting Prefect
flow run, which records it (:mod:`stages.judgment`) and goes on. It never writes run or
stage state itself.

Every answer is signed here with Shipyard's judgment key, with who answers and by which
route (``cli``, ``ui-session``, ``api-token``), for this run, stage and judgment request
only (:mod:`shipyard.domain.judgment_signature`); the judgment takes no answer it cannot
verify. The caller says who and how: the CLI the OS user it runs as, the API and the UI the
signed-in user or the token's owner, never what a request's body says.

Every refusal is a :class:`JudgmentError` whose message says what to do instead;
:class:`InvalidAnswer` is the caller's mistake (HTTP 422), the others are conflicts with the
run's state (409).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shipyard.adapters.prefect import (
    FlowRunNotPaused,
    PrefectError,
    resume_with_input,
    subflow_run_ids,
)
from shipyard.domain.clock import Clock, system_clock
from shipyard.domain.judgment_signature import ROUTES, AnswerClaims, Decision, Route
from shipyard.domain.states import State
from shipyard.store import RunRecord, StageRecord, Store
from stages.judgment import JudgmentRequest

__all__ = ["AlreadyAnswered", "Decision", "InvalidAnswer", "JudgmentAnswer", "JudgmentError",
           "JudgmentExpired", "NotWaiting", "Route", "SeveralWaiting", "answer_judgment"]

Resume = Callable[[str, Mapping[str, Any]], Awaitable[None]]
Subflows = Callable[[str], Awaitable[list[str]]]

_MAX_ACTOR = 120  # the approvals table's column
_MAX_COMMENT = 4000
_MAX_WAITING_RUNS = 500


class JudgmentError(Exception):
    """An answer that cannot be given; the message says why and what to do."""


class InvalidAnswer(JudgmentError):
    """The answer itself is wrong: an unknown decision, no actor, a rejection without a
    reason."""


class NotWaiting(JudgmentError):
    """No judgment of the run (or of the runs it started) waits for an answer."""


class AlreadyAnswered(NotWaiting):
    """The judgment was answered already (perhaps an instant ago, by someone else)."""


class JudgmentExpired(NotWaiting):
    """The judgment's time is up: it fails, and can no longer be approved."""


class SeveralWaiting(JudgmentError):
    """The run started several runs that each wait for a judgment: name one."""


@dataclass(frozen=True, slots=True)
class JudgmentAnswer:
    """An answer Prefect took; the waiting flow records it and goes on."""

    run_id: str  # the run whose stage waited
    stage_ref: str
    subject: str
    decision: Decision
    actor: str
    route: Route
    comment: str
    answered_at: datetime
    asked_run_id: str  # the run named by the caller: the same, or one that started it

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "stage": self.stage_ref, "subject": self.subject,
                "decision": self.decision, "actor": self.actor, "route": self.route,
                "comment": self.comment, "answered_at": self.answered_at.isoformat(),
                "asked_run_id": self.asked_run_id}


@dataclass(frozen=True, slots=True)
class _Waiting:
    run: RunRecord
    stage: StageRecord
    request: JudgmentRequest


async def answer_judgment(store: Store, run_id: str, decision: str, *, actor: str,
                          route: Route, key: bytes, comment: str = "",
                          clock: Clock = system_clock, resume: Resume = resume_with_input,
                          subflows: Subflows = subflow_run_ids) -> JudgmentAnswer:
    """Approve or reject the judgment that run ``run_id`` (any unique prefix), or a run it
    started, waits for, as ``actor`` by ``route``; the answer is signed with ``key``
    (:func:`stages.judgment.judgment_key`).

    Raises :class:`InvalidAnswer`, :class:`NotWaiting` (or its :class:`AlreadyAnswered`,
    :class:`JudgmentExpired`), :class:`SeveralWaiting`, the store's ``RunNotFound`` and
    ``AmbiguousRunId``, and :class:`~shipyard.adapters.prefect.PrefectError` when Prefect
    cannot take the answer.
    """
    if route not in ROUTES:
        raise ValueError(f"route {route!r} must be one of {', '.join(ROUTES)}")
    decided, actor, comment = _checked(decision, actor, comment)
    asked = await asyncio.to_thread(store.get_run, run_id)
    waiting = await _waiting_judgments(store, asked, subflows)
    if not waiting:
        raise await asyncio.to_thread(_why_not_waiting, store, asked)
    if len(waiting) > 1:
        listed = "; ".join(f"{w.run.pipeline} run {w.run.short_id} ({w.request.subject})"
                           for w in waiting)
        raise SeveralWaiting(f"run {asked.short_id} has several judgments waiting: {listed}; "
                             "answer one by its own run id")
    [found] = waiting
    now = clock()
    if found.request.expired(now):
        if found.request.wait == "suspend":
            # Prefect's timer should have resumed it already; resuming it without an answer
            # makes the flow record the timeout now.
            with contextlib.suppress(PrefectError):
                await resume(found.request.flow_run_id, {})
        raise JudgmentExpired(
            f"the judgment on {found.request.subject} (run {found.run.short_id}) timed out "
            f"at {found.request.deadline:%Y-%m-%d %H:%M:%S} UTC and can no longer be "
            f"answered; the run fails with JudgmentTimedOut")
    claims = AnswerClaims(run_id=found.run.id, stage=found.stage.ref,
                          request=found.request.nonce, decision=decided, actor=actor,
                          route=route, comment=comment, issued_at=now,
                          nonce=secrets.token_hex(16))
    run_input = claims.to_input(key)
    try:
        await resume(found.request.flow_run_id, run_input)
    except FlowRunNotPaused as err:
        raise AlreadyAnswered(
            f"the judgment on {found.request.subject} (run {found.run.short_id}) was answered "
            f"already, or its flow run ended ({err}); `shipyard show {found.run.short_id}` "
            "shows what became of it") from err
    return JudgmentAnswer(found.run.id, found.stage.ref, found.request.subject, decided,
                          actor, route, comment, now, asked.id)


def _checked(decision: str, actor: str, comment: str) -> tuple[Decision, str, str]:
    actor, comment = actor.strip(), comment.strip()
    if decision not in ("approve", "reject"):
        raise InvalidAnswer(f"decision {decision!r} must be 'approve' or 'reject'")
    if not actor:
        raise InvalidAnswer("an answer needs an actor: say who answers")
    if len(actor) > _MAX_ACTOR:
        raise InvalidAnswer(f"the actor is {len(actor)} characters; at most {_MAX_ACTOR}")
    if len(comment) > _MAX_COMMENT:
        raise InvalidAnswer(f"the comment is {len(comment)} characters; at most {_MAX_COMMENT}")
    if decision == "reject" and not comment:
        raise InvalidAnswer("a rejection needs a reason: `shipyard reject RUN --reason TEXT` "
                            "(or a comment in the API's body)")
    return ("approve" if decision == "approve" else "reject"), actor, comment


async def _waiting_judgments(store: Store, asked: RunRecord,
                             subflows: Subflows) -> list[_Waiting]:
    """The judgments waiting in ``asked`` itself, else in the runs it started: found as
    Prefect subflows of its flow run (a child stage links its run only once it ends)."""
    own = _waiting_in(asked)
    if own or asked.state.is_terminal or not asked.prefect_flow_run_id:
        return own
    waiting_runs = await asyncio.to_thread(store.list_runs, limit=_MAX_WAITING_RUNS,
                                           state=State.WAITING)
    by_flow_run = {r.prefect_flow_run_id: r for r in waiting_runs
                   if r.prefect_flow_run_id and r.id != asked.id}
    if not by_flow_run:
        return []
    found: list[_Waiting] = []
    frontier, seen = [asked.prefect_flow_run_id], set()
    while frontier:
        flow_run_id = frontier.pop()
        seen.add(flow_run_id)
        for child in await subflows(flow_run_id):
            if child in by_flow_run:
                child_run = await asyncio.to_thread(store.get_run, by_flow_run[child].id)
                found.extend(_waiting_in(child_run))
            if child not in seen:
                frontier.append(child)
    return found


def _waiting_in(run: RunRecord) -> list[_Waiting]:
    found = []
    for stage in run.stages:
        if stage.state is State.WAITING:
            try:
                request = JudgmentRequest.model_validate(stage.outputs)
            except ValidationError:
                continue  # waiting, but not yet saying for what: an instant after it began
            found.append(_Waiting(run, stage, request))
    return found


def _why_not_waiting(store: Store, asked: RunRecord) -> NotWaiting:
    for run in [asked, *_finished_children(store, asked)]:
        for stage in run.stages:
            decision = stage.outputs.get("decision")
            if decision in ("approved", "rejected"):
                return AlreadyAnswered(
                    f"the judgment {stage.ref!r} of {run.pipeline} run {run.short_id} was "
                    f"answered already: {decision} by {stage.outputs.get('actor')} at "
                    f"{stage.outputs.get('answered_at')}; the run is {run.state.value}")
            if stage.reason == "JudgmentTimedOut":
                return JudgmentExpired(
                    f"the judgment {stage.ref!r} of {run.pipeline} run {run.short_id} timed "
                    f"out: {stage.message}")
    return NotWaiting(
        f"{asked.pipeline} run {asked.short_id} is {asked.state.value}, not waiting for a "
        f"judgment; `shipyard show {asked.short_id}` shows its stages")


def _finished_children(store: Store, run: RunRecord) -> list[RunRecord]:
    children = []
    for stage in run.stages:
        child_id = stage.outputs.get("child_run_id")
        if isinstance(child_id, str):
            children.append(store.get_run(child_id))
    return children
