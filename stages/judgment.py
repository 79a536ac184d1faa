"""Manual judgment (Spinnaker's Manual Judgment): a stage that waits for a person to approve
or reject, and whose timeout never approves.

A CD flow calls it between two stages::

    await manual_judgment(run, subject="gateway 1a2b3c → prod", timeout_seconds=4 * 3600)

The stage goes running → waiting (reason ``AwaitingJudgment``, the message says how to
answer), then waits for an answer through Prefect; ``shipyard approve|reject`` and
``POST /api/runs/{id}/judgment`` give it (:mod:`stages.judgments_service`). The answer is
recorded (an approval row with who and why, an audit entry) and the stage succeeds
(``Approved``) or fails (``Rejected``, saying who and why). With no answer by the deadline
it fails with ``JudgmentTimedOut``; an answer without a decision never approves.

How it waits: suspend where Prefect allows it, pause where it does not
-----------------------------------------------------------------------
A judgment can wait for hours; it must not lose its place when the worker restarts, and the
pipeline must go on within seconds of the answer. ``bench/judgment_latency.py`` measured
both on this machine (2 CPUs shared with other work; 5 runs each, twice):

* **pause** (``pause_flow_run``, polling every 1 s): the flow's process stays alive. The
  next stage started 0.96 s after the answer (0.93 to 1.29 s), but the waiting process
  holds 135 MB for as long as the judgment waits, and **a worker restart kills it**:
  stopping the worker (as ``shipyard down`` does) takes the flow's process with it, Prefect
  still shows the run Paused and takes the answer, and nothing goes on. The judgment is
  lost (tested).
* **suspend** (``suspend_flow_run``): the process exits and the wait is a state in Prefect's
  database, holding no memory. It survives a worker restart (tested), and the server's too
  (``shipyard down --only prefect``, then ``up``: measured). On the answer Prefect
  reschedules the flow run and a new process runs the body again: the next stage started
  6.5 s after the answer (5.9 to 7.7 s; 6.7 to 9.1 s with the machine busier). Of that, the
  worker takes the run after 0.5 to 0.8 s, the new process starts the flow after 5.3 to
  7.1 s (Python, Prefect and the flow's imports), and the stages before the judgment are
  passed over and the answer recorded in 0.5 to 0.7 s.

Suspend it is: 6.5 s rather than 1 s is still within the seconds the requirement allows,
while a judgment (and its run) lost to a worker restart, or 135 MB held per run for hours, is
not acceptable. Two consequences are handled here and in
:mod:`stages.runtime` and :mod:`stages.lifecycle`:

* the body runs again on resume, so it must be idempotent: ``begin_run`` adopts the run this
  flow run began, a stage already recorded as succeeded returns its recorded outputs instead
  of running, this stage picks its answer up instead of waiting again, and code of the flow
  itself must not redo what it did (``release`` reuses its ``ci`` stage's outputs);
* a suspended run has no process to notice its deadline, so a Prefect automation is the
  timer (:func:`shipyard.adapters.prefect.arm_resume_timer`): if the run is still
  suspended when the time is up, Prefect resumes it without an answer and the stage records
  ``JudgmentTimedOut``. Proactive triggers are evaluated every 5 s and wait at least 10 s,
  so a timeout lands 5-15 s late, plus the flow's restart; never early, never approving.
  Should the automation not fire, the first answer after the deadline is refused and
  resumes the run without one, which records the timeout then.

Prefect suspends only the flow run of a deployment that is no subflow ("Cannot suspend
subflows"). A judgment in a subflow (a pipeline whose flow another flow calls, as
``release`` calls ``ci``) or in a flow called in-process pauses instead, with the costs
above; the whole parent process waits with it. A pipeline that needs a judgment in a child
should start the child as a deployment run of its own
(``run_deployment(..., as_subflow=False)``).

Known gap: a worker stopped in the instant between Prefect accepting the suspension and the
flow saving the answer's schema (a few hundred milliseconds) leaves a run Prefect will not
resume ("Run input schema not found"); cancel it and start again.

Only answers Shipyard signed count
----------------------------------
Whoever can use Prefect's API can resume a waiting flow run with any input that fits
:class:`JudgmentInput`. So an answer counts only when it carries Shipyard's signature
(:mod:`shipyard.domain.judgment_signature`: HMAC-SHA256 with the key in
:func:`judgment_key`) over this run, this stage, this judgment's request nonce (drawn when
it began to wait, so an answer to an earlier judgment cannot be replayed to a later one),
the decision, who answered, by which route (``cli``, ``ui-session``, ``api-token``), the
comment and when, given before the deadline. An answer that does not verify is treated as
no answer: it is written to the audit trail (``judgment.refused``, with the reason and
what it claimed) and to the stage's log, and the judgment waits again, suspended or paused
as before, until a verified answer comes or the deadline fails it. Failing at once would
be no safer (a forged approval is refused either way) and would let anyone who can resume
a flow run fail every pipeline waiting for a judgment, whereas waiting keeps the pipeline
in the hands of the people Shipyard lets answer. Prefect's own UI can therefore no longer
answer a judgment; its "Resume" is refused like any unsigned answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import re
import secrets
from datetime import datetime, timedelta
from typing import ClassVar, Literal

from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.input import RunInput
from pydantic import BaseModel

from shipyard.adapters.prefect import arm_resume_timer, disarm_resume_timer
from shipyard.adapters.secret_files import PrivateFileError, read_or_create_secret
from shipyard.domain.clock import Clock, system_clock
from shipyard.domain.judgment_signature import (
    KEY_BYTES,
    AnswerClaims,
    Decision,
    InvalidKey,
    UnverifiedAnswer,
    parse_key,
    verify,
)
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.store import Ledger
from stages.runtime import (
    RunContext,
    StageContext,
    StageFailure,
    StageResult,
    pause_key,
    resumed_pause_keys,
    run_stage,
)

__all__ = ["JudgmentInput", "JudgmentRequest", "JudgmentResult", "WaitMode", "judgment_key",
           "manual_judgment"]

WaitMode = Literal["suspend", "pause"]

_POLL_SECONDS = 1  # pause only: Prefect's default of 10 s puts up to 10 s after the answer
_SYSTEM_ACTOR = "shipyard"


class JudgmentInput(RunInput):
    """An answer, as the flow receives it from Prefect (which checks every resume against
    this schema). No decision means the flow was resumed without an answer: by the timer,
    or by hand in Prefect's UI; that never approves. An answer counts only if Shipyard
    signed it (see the module's docstring)."""

    decision: Decision | None = None
    actor: str = ""
    comment: str = ""
    answered_at: datetime | None = None
    route: str = ""
    run_id: str = ""
    stage: str = ""
    nonce: str = ""
    signature: str = ""


class JudgmentRequest(BaseModel):
    """What a waiting judgment records in its stage's outputs: what is asked, until when,
    and which Prefect flow run to resume with the answer."""

    subject: str
    flow_run_id: str
    wait: WaitMode
    deadline: datetime
    timeout_seconds: float
    nonce: str = ""  # binds answers to this request; "" in requests made before signing

    def expired(self, now: datetime) -> bool:
        return now >= self.deadline


class JudgmentResult(StageResult):
    """An approved judgment: what was approved, by whom, why and when."""

    subject: str
    decision: Literal["approved"] = "approved"
    actor: str
    route: str = ""
    comment: str = ""
    answered_at: datetime

    success_reason: ClassVar[str] = "Approved"

    def summary(self) -> str:
        return f"{self.subject}: approved by {self.actor}" + (
            f": {self.comment}" if self.comment else "")


async def manual_judgment(run: RunContext, *, subject: str, timeout_seconds: float,
                          stage_ref: str = "judgment",
                          clock: Clock = system_clock) -> JudgmentResult:
    """Wait for a person to approve ``subject``; return the approval.

    Raises :class:`~stages.runtime.StageFailure` with reason ``Rejected`` (the message says
    who and why) or ``JudgmentTimedOut`` when nobody answered within ``timeout_seconds``.
    Only answers Shipyard signed count; others are audited and waited past. Call it from
    the flow's body, not from a task: a suspended flow run leaves this call (its process
    exits) and comes back to it when resumed.
    """
    if not timeout_seconds > 0:
        raise ValueError(f"timeout_seconds must be positive, not {timeout_seconds}")

    async def judge(ctx: StageContext) -> JudgmentResult:
        try:  # before waiting: a key that cannot be read fails now, not at the answer
            key = await asyncio.to_thread(judgment_key, ctx.settings)
        except PrivateFileError as err:
            raise StageFailure("JudgmentKeyUnusable", str(err)) from err
        if ctx.recorded is not None and ctx.recorded.state is State.WAITING:
            # The flow run was resumed: the answer is in.
            request = JudgmentRequest.model_validate(ctx.recorded.outputs)
        else:
            request = await _start_waiting(ctx, subject, timeout_seconds, clock())
        checker = _Checker(ctx, request, key)
        if request.wait == "suspend":
            answer = await _suspended(ctx, run, request, checker, clock)
        else:
            answer = await _paused(ctx, run, request, checker, clock)
        return await _record(ctx, request, answer, clock())

    # A verdict is never reused: a restart asks again.
    return await run_stage(run, stage_ref, JudgmentResult, judge, reusable=False)


def judgment_key(settings: Settings) -> bytes:
    """The key that signs and verifies judgment answers, made the first time it is needed
    (mode 0600). Raises :class:`~shipyard.adapters.secret_files.PrivateFileError` naming
    the file and the fix when it is open to others, empty or not a key."""
    path = settings.judgment_key_path
    text = read_or_create_secret(path, lambda: secrets.token_hex(KEY_BYTES),
                                 what="the key that signs judgment answers")
    try:
        return parse_key(text)
    except InvalidKey as err:
        raise PrivateFileError(
            f"{path} (the key that signs judgment answers): {err}; delete it and Shipyard "
            "makes a new one (judgments waiting then need their answers again)") from err


async def _start_waiting(ctx: StageContext, subject: str, timeout_seconds: float,
                         now: datetime) -> JudgmentRequest:
    request = JudgmentRequest(subject=subject, flow_run_id=_flow_run_id(), wait=_wait_mode(),
                              deadline=now + timedelta(seconds=timeout_seconds),
                              timeout_seconds=timeout_seconds, nonce=secrets.token_hex(16))
    run_id = ctx.run_id[:8]
    message = (f"waiting for a judgment on {subject}: `shipyard approve {run_id}` or "
               f"`shipyard reject {run_id} --reason TEXT`, by "
               f"{request.deadline:%Y-%m-%d %H:%M:%S} UTC (then it fails, never approves)")
    await ctx.log(message)
    await ctx.wait("AwaitingJudgment", message, request.model_dump(mode="json"))
    return request


class _Checker:
    """Says whether an answer counts: it has a decision and Shipyard's signature for this
    judgment. A refused one is audited and logged."""

    def __init__(self, ctx: StageContext, request: JudgmentRequest, key: bytes) -> None:
        self._ctx, self._request, self._key = ctx, request, key

    async def counts(self, answer: JudgmentInput) -> bool:
        if answer.decision is None:
            return False
        claims = AnswerClaims(
            run_id=self._ctx.run_id, stage=self._ctx.ref, request=self._request.nonce,
            decision=answer.decision, actor=answer.actor, route=answer.route,
            comment=answer.comment, issued_at=answer.answered_at or datetime.min,
            nonce=answer.nonce)
        try:
            verify(claims, answer.signature, self._key, deadline=self._request.deadline,
                   addressed=(answer.run_id, answer.stage))
        except UnverifiedAnswer as refusal:
            await self._refused(answer, refusal)
            return False
        return True

    async def _refused(self, answer: JudgmentInput, refusal: UnverifiedAnswer) -> None:
        ctx = self._ctx
        claimed = answer.actor.strip() or "nobody"
        details = {"stage": ctx.ref, "subject": self._request.subject,
                   "reason": refusal.reason, "why": str(refusal),
                   "decision": answer.decision, "claimed_actor": answer.actor,
                   "claimed_route": answer.route, "comment": answer.comment}
        await asyncio.to_thread(Ledger(ctx.store).audit, actor=_SYSTEM_ACTOR,
                                action="judgment.refused", subject_kind="run",
                                subject_id=ctx.run_id, details=details)
        await ctx.log(f"refused an answer ({answer.decision} as {claimed}, route "
                      f"{answer.route or 'none'}): {refusal} ({refusal.reason}); only "
                      "answers Shipyard signed count, waiting again")


async def _suspended(ctx: StageContext, run: RunContext, request: JudgmentRequest,
                     checker: _Checker, clock: Clock) -> JudgmentInput:
    """The verified answer the flow run was resumed with; or suspend it (its process exits
    by :class:`prefect.exceptions.Pause`) until there is one or the time is up (then an
    empty answer)."""
    base = _key_base(ctx.ref)
    fired = _fired(run, base)
    if fired:
        # Asking again with a key that already fired returns what it was resumed with.
        answer = await asuspend_flow_run(wait_for_input=JudgmentInput, key=fired[-1])
        await disarm_resume_timer(_timer_name(fired[-1]))
        if await checker.counts(answer):
            return answer
        if request.expired(clock()):
            return JudgmentInput()
        if answer.decision is None:
            await ctx.log("resumed without an answer; waiting again")
    key = pause_key(run, f"{base}-{len(fired)}")
    remaining = (request.deadline - clock()).total_seconds()
    await arm_resume_timer(request.flow_run_id, name=_timer_name(key), seconds=remaining)
    await ctx.flush()
    try:
        # Returns only if this key fired before, which _fired() rules out.
        return await asuspend_flow_run(wait_for_input=JudgmentInput, key=key)
    except Exception:  # Prefect refused to suspend: no timer for a wait that never began
        await disarm_resume_timer(_timer_name(key))
        raise


async def _paused(ctx: StageContext, run: RunContext, request: JudgmentRequest,
                  checker: _Checker, clock: Clock) -> JudgmentInput:
    """The verified answer, waited for in this process; an empty one once the time is up."""
    base = _key_base(ctx.ref)
    for attempt in itertools.count():
        remaining = (request.deadline - clock()).total_seconds()
        if remaining <= 0:
            break
        try:
            answer = await apause_flow_run(
                wait_for_input=JudgmentInput, timeout=math.ceil(remaining),
                poll_interval=_POLL_SECONDS, key=pause_key(run, f"{base}-p{attempt}"))
        except FlowPauseTimeout:
            break
        if await checker.counts(answer):
            return answer
        if answer.decision is None:
            await ctx.log("resumed without an answer; waiting again")
    return JudgmentInput()


async def _record(ctx: StageContext, request: JudgmentRequest, answer: JudgmentInput,
                  now: datetime) -> JudgmentResult:
    """Record a verified answer, or (no decision) the timeout."""
    ledger = Ledger(ctx.store)
    details = {"stage": ctx.ref, "subject": request.subject, "comment": answer.comment,
               "route": answer.route, "answer_nonce": answer.nonce}
    if answer.decision is None:
        message = (f"no answer within {_duration(request.timeout_seconds)}: "
                   f"{request.subject} was not approved")
        await asyncio.to_thread(ledger.audit, actor=_SYSTEM_ACTOR, action="judgment.timeout",
                                subject_kind="run", subject_id=ctx.run_id,
                                details={"stage": ctx.ref, "subject": request.subject,
                                         "comment": ""})
        raise StageFailure("JudgmentTimedOut", message)
    decided = "approved" if answer.decision == "approve" else "rejected"
    actor = answer.actor
    message = f"{decided} by {actor}" + (f": {answer.comment}" if answer.comment else "")
    await asyncio.to_thread(ledger.record_approval, run_id=ctx.run_id, stage_ref=ctx.ref,
                            decision=decided, actor=actor, comment=answer.comment)
    await asyncio.to_thread(ledger.audit, actor=actor,
                            action=f"judgment.{answer.decision}", subject_kind="run",
                            subject_id=ctx.run_id, details=details)
    answered_at = answer.answered_at or now
    outputs = {"decision": decided, "actor": actor, "route": answer.route,
               "comment": answer.comment, "answered_at": answered_at.isoformat()}
    if answer.decision == "reject":
        raise StageFailure("Rejected", message, outputs)
    await ctx.log(message)
    # A waiting stage resumes running before it can succeed (the table of transitions).
    await ctx.resume("Approved", message)
    return JudgmentResult(subject=request.subject, actor=actor, route=answer.route,
                          comment=answer.comment, answered_at=answered_at)


def _wait_mode() -> WaitMode:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("a manual judgment waits inside a Prefect flow run")
    flow_run = context.flow_run
    suspendable = (flow_run.deployment_id is not None and flow_run.parent_task_run_id is None
                   and TaskRunContext.get() is None)
    return "suspend" if suspendable else "pause"


def _flow_run_id() -> str:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("a manual judgment waits inside a Prefect flow run")
    return str(context.flow_run.id)


def _key_base(ref: str) -> str:
    # Prefect's keys allow letters, digits and dashes; the digest keeps "a:b" and "a.b"
    # apart.
    slug = re.sub(r"[^a-z0-9]+", "-", ref).strip("-")
    return f"judgment-{slug}-{hashlib.sha256(ref.encode()).hexdigest()[:6]}"


def _fired(run: RunContext, base: str) -> list[str]:
    """This judgment's suspensions that the flow run was already resumed from, in order."""
    prefix = pause_key(run, base) + "-"
    fired = [key for key in resumed_pause_keys()
             if key.startswith(prefix) and key[len(prefix):].isdigit()]
    return sorted(fired, key=lambda key: int(key[len(prefix):]))


def _timer_name(key: str) -> str:
    return f"{key}-timeout"


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
