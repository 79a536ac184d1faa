"""``POST /hooks/github``: GitHub's ``push`` and ``ping`` events, in GitHub's own format.

What happens to a delivery, in order, each step refusing with a 4xx and changing nothing:

1. each source address (the socket's peer; the client a trusted proxy names, see
   ``SHIPYARD_TRUSTED_PROXIES``) gets ``SHIPYARD_WEBHOOK_RATE_BURST`` calls at once and
   ``SHIPYARD_WEBHOOK_RATE_PER_SECOND`` after: 429 with Retry-After beyond it;
2. without ``SHIPYARD_WEBHOOK_SECRET`` every delivery is refused (401), unless
   ``shipyard ui --insecure-webhook`` allowed unsigned ones (a warning in every log line);
3. the body is read up to ``SHIPYARD_WEBHOOK_MAX_BODY_BYTES``, counted as it streams in
   (a Content-Length may lie, or be absent): 413 beyond it;
4. ``X-Hub-Signature-256`` must be the HMAC-SHA256 of the raw body under the secret: 401;
5. the body must be JSON (or GitHub's form encoding of it): 400; ``ping`` is answered 200;
   any other event but ``push`` is answered 202 with the reason it is ignored;
6. a push needs its ``X-GitHub-Delivery`` id (400), a payload with the fields Shipyard
   relies on, and a clone URL the policy allows (https or ssh on an allowed host; see
   :mod:`shipyard.domain.clone_urls`, which reads no disk and asks no DNS): 422, naming
   the field;
7. a repository ``SHIPYARD_REPOSITORIES`` does not allow is answered 202 ``ignored:
   repository not allowed`` and recorded as an ignored delivery; so is a push the trigger
   rules do not take;
8. an accepted push is recorded with its queued ``ci`` run in one transaction, keyed by
   the delivery id, so a redelivery (even one racing the first) answers with the first's
   run and starts nothing. The same repository, ref and commit under a new delivery id
   within ``SHIPYARD_WEBHOOK_REPLAY_WINDOW_SECONDS`` is a replay: 202 ``ignored:
   duplicate push`` with the first run's id. The answer goes out before Prefect is asked:
   the reconciler is woken to hand the run over in the background.

Every answer but a 429 is one log line; none carries a clone URL's credentials.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from shipyard.domain.client_address import client_key
from shipyard.domain.clone_urls import CloneUrl, CloneUrlPolicy, RefusedCloneUrl, check_clone_url
from shipyard.domain.deployments import FIRST_STAGES
from shipyard.domain.push_triggers import TriggerRules, decide
from shipyard.domain.rate_limit import TokenBuckets, retry_after
from shipyard.domain.repositories import NOT_ALLOWED, RepositoryAllowList
from shipyard.domain.webhooks import (
    InvalidPayload,
    InvalidSignature,
    MalformedBody,
    Push,
    decode_body,
    parse_push,
    validate_delivery_id,
    verify_signature,
)
from shipyard.settings import Settings
from shipyard.store import DeliveryRecord, Ledger

__all__ = [
    "DUPLICATE",
    "PIPELINE",
    "UNCONFIGURED",
    "WebhookConfig",
    "Webhooks",
    "allow_unsigned_deliveries",
    "router",
]

log = logging.getLogger("shipyard.ui.webhooks")

PIPELINE = "ci"
"""What a push starts."""

DUPLICATE = "duplicate push"
"""What a replay of a push that already started a run is answered."""

UNCONFIGURED = (
    "SHIPYARD_WEBHOOK_SECRET is not set, so Shipyard refuses every delivery: set it to the "
    "webhook's secret (the same on GitHub's side) and restart `shipyard ui`")
"""What every delivery is answered (401) while no secret is set."""

UNSIGNED_WARNING = "UNSIGNED delivery taken (shipyard ui --insecure-webhook)"

_DRAIN_FACTOR = 4  # read (and drop) this much past the limit, so the sender sees the 413
_EVENT = re.compile(r"[a-z_]{1,40}")
_KINDS = (NOT_ALLOWED, DUPLICATE)  # ignored deliveries whose detail is "<kind>: <reason>"

router = APIRouter()

_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": 'a ping: {"pong": true, "zen": ...}'},
    202: {"description": 'a push: {"run_id", "pipeline", "delivery"} when it starts a run, '
          '{"ignored", ...} saying why when not'},
    400: {"description": "no X-GitHub-Event, a body that is not JSON, or a malformed "
          "X-GitHub-Delivery"},
    401: {"description": "no signature or a wrong one (or no SHIPYARD_WEBHOOK_SECRET set)"},
    413: {"description": "a body past SHIPYARD_WEBHOOK_MAX_BODY_BYTES"},
    422: {"description": 'a push without what Shipyard relies on, or a clone URL it refuses: '
          '{"error", "field"}'},
    429: {"description": "too many deliveries from this address (with Retry-After)"},
}


@dataclass(frozen=True)
class WebhookConfig:
    """What the settings say about deliveries, read once."""

    secret: bytes | None
    rules: TriggerRules
    max_body_bytes: int
    repositories: RepositoryAllowList = field(
        default_factory=lambda: RepositoryAllowList.of(()))
    clone_urls: CloneUrlPolicy = field(default_factory=CloneUrlPolicy.of)
    replay_window: timedelta = timedelta(minutes=10)
    rate_per_second: float = 10.0
    rate_burst: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        secret = settings.webhook_secret
        return cls(secret=secret.get_secret_value().encode() if secret else None,
                   rules=settings.trigger_rules, max_body_bytes=settings.webhook_max_body_bytes,
                   repositories=RepositoryAllowList.of(settings.repositories),
                   clone_urls=CloneUrlPolicy.of(settings.clone_hosts,
                                                allow_local=settings.allow_local_repositories),
                   replay_window=timedelta(seconds=settings.webhook_replay_window_seconds),
                   rate_per_second=settings.webhook_rate_per_second,
                   rate_burst=settings.webhook_rate_burst)


@dataclass
class Webhooks:
    """What the route needs, kept on the application's state."""

    config: WebhookConfig
    ledger: Ledger
    recorded: Callable[[str], None]  # told each new run's id, to hand it over at once
    monotonic: Callable[[], float] = time.monotonic
    limiter: TokenBuckets = field(init=False)

    def __post_init__(self) -> None:
        # Used only on the event loop (the route is async and awaits nothing before it).
        self.limiter = TokenBuckets(self.config.rate_per_second, self.config.rate_burst)


def allow_unsigned_deliveries(app: FastAPI) -> None:
    """``shipyard ui --insecure-webhook``: without a secret, take unsigned deliveries
    rather than refuse them, each logged as a warning. Never the default."""
    app.state.webhook_unsigned_allowed = True


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any]
    about: str = ""  # for the log line: the delivery and repository it concerns


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_large = True
        if too_large:
            if size > limit * _DRAIN_FACTOR:
                break
            continue
        chunks.append(chunk)
    if too_large:
        raise _TooLarge
    return b"".join(chunks)


@router.post("/hooks/github", status_code=202, responses=_ANSWERS)
async def receive_github_delivery(request: Request) -> JSONResponse:
    """Take one GitHub delivery (see the module's description for every answer)."""
    hooks: Webhooks = request.app.state.webhooks
    source = request.client.host if request.client else None
    wait = hooks.limiter.take(client_key(source), hooks.monotonic())
    if wait:
        seconds = retry_after(wait)
        log.debug("webhook from %s: 429, %d s to wait", source, seconds)
        return JSONResponse({"error": f"too many deliveries from this address; try again "
                                      f"in {seconds} s"},
                            status_code=429, headers={"Retry-After": str(seconds)})
    unsigned = hooks.config.secret is None and getattr(
        request.app.state, "webhook_unsigned_allowed", False)
    answer = await _answer(request, hooks, unsigned=unsigned)
    event = request.headers.get("x-github-event", "")
    line = (f"webhook from {source}: {answer.status} "
            f"{'event ' + event + ', ' if _EVENT.fullmatch(event) else ''}{answer.about}"
            f"{_summary(answer.body)}")
    if unsigned:
        log.warning("%s: %s", UNSIGNED_WARNING, line)
    else:
        log.info("%s", line)
    return JSONResponse(answer.body, status_code=answer.status)


def _summary(body: dict[str, Any]) -> str:
    if "error" in body:
        return str(body["error"])
    if "ignored" in body:
        reason = f" ({body['reason']})" if "reason" in body else ""
        return f"ignored: {body['ignored']}{reason}"
    if "run_id" in body:
        return f"run {body['run_id']} ({body.get('pipeline', PIPELINE)})"
    return "pong" if body.get("pong") else ""


async def _answer(request: Request, hooks: Webhooks, *, unsigned: bool) -> _Answer:
    config = hooks.config
    if config.secret is None and not unsigned:
        return _Answer(401, {"error": UNCONFIGURED})
    try:
        body = await _read_body(request, config.max_body_bytes)
    except _TooLarge:
        return _Answer(413, {"error": f"the body is larger than {config.max_body_bytes} "
                                      "bytes (SHIPYARD_WEBHOOK_MAX_BODY_BYTES)"})
    except ClientDisconnect:
        return _Answer(400, {"error": "the sender went away before the body was complete"})
    if config.secret is not None:
        try:
            verify_signature(config.secret, body, request.headers.get("x-hub-signature-256"))
        except InvalidSignature as err:
            return _Answer(401, {"error": str(err)})
    event = request.headers.get("x-github-event", "")
    if not event:
        return _Answer(400, {"error": "X-GitHub-Event is missing: which event is this?"})
    try:
        payload = decode_body(body, request.headers.get("content-type", ""))
    except MalformedBody as err:
        return _Answer(400, {"error": str(err)})
    if event == "ping":
        zen = payload.get("zen", "") if isinstance(payload, dict) else ""
        return _Answer(200, {"pong": True, "zen": zen})
    if event != "push":
        return _Answer(202, {"ignored": f"event {event!r} is not handled; Shipyard starts "
                                        "pipelines on push (and answers ping)"})
    try:
        delivery_id = validate_delivery_id(request.headers.get("x-github-delivery"))
    except ValueError as err:
        return _Answer(400, {"error": str(err)})
    try:
        push = parse_push(payload)
        clone = _check_clone_url(push.clone_url, config.clone_urls)
    except InvalidPayload as err:
        return _Answer(422, {"error": str(err), "field": err.field},
                       f"delivery {delivery_id}: ")
    about = (f"delivery {delivery_id}, {push.repository or clone.shown} "
             f"{push.kind} {push.name!r} at {push.after[:12]}: ")
    record, new = await _record(hooks, delivery_id, push, clone)
    if new and record.outcome == "accepted" and record.run_id:
        hooks.recorded(record.run_id)
    return _Answer(202, _recorded_answer(record, new), about)


def _check_clone_url(url: str, policy: CloneUrlPolicy) -> CloneUrl:
    try:
        return check_clone_url(url, policy)
    except RefusedCloneUrl as err:
        raise InvalidPayload("repository.clone_url", str(err)) from err


async def _record(hooks: Webhooks, delivery_id: str, push: Push,
                  clone: CloneUrl) -> tuple[DeliveryRecord, bool]:
    config = hooks.config
    full_name = push.repository or None
    if not config.repositories.allows(full_name, clone):
        return await asyncio.to_thread(
            hooks.ledger.record_delivery, delivery_id=delivery_id, event="push",
            outcome="ignored", detail=config.repositories.refusal(full_name, clone))
    decision = decide(push, config.rules)
    if not decision.accepted:
        return await asyncio.to_thread(hooks.ledger.record_delivery, delivery_id=delivery_id,
                                       event="push", outcome="ignored", detail=decision.reason)
    parameters = {"repo": push.clone_url, "ref": push.after,
                  "branch": push.name if push.kind == "branch" else None}
    window = config.replay_window
    duplicate = (f"{DUPLICATE}: {push.repository or clone.shown} {push.kind} {push.name!r} "
                 f"at {push.after[:12]} already started a run within the last "
                 f"{window.total_seconds():g} s (SHIPYARD_WEBHOOK_REPLAY_WINDOW_SECONDS)")
    return await asyncio.to_thread(
        hooks.ledger.accept_delivery, delivery_id=delivery_id, event="push",
        detail=decision.reason, pipeline=PIPELINE, stages=FIRST_STAGES[PIPELINE],
        trigger="push", actor=push.pusher, repo_url=push.clone_url, ref=push.name,
        commit_sha=push.after, parameters=parameters, replay_window=window,
        duplicate_detail=duplicate)


def _recorded_answer(record: DeliveryRecord, new: bool) -> dict[str, Any]:
    """What a recorded delivery is answered: the same for its redeliveries (plus
    ``redelivery``), since it is read back from the record."""
    answer: dict[str, Any] = {"delivery": record.delivery_id}
    if not new:
        answer["redelivery"] = True
    if record.outcome == "accepted":
        return {"run_id": record.run_id, "pipeline": PIPELINE, **answer}
    kind, reason = record.detail, None
    for known in _KINDS:
        if record.detail.startswith(f"{known}: "):
            kind, reason = known, record.detail.removeprefix(f"{known}: ")
    answer["ignored"] = kind
    if reason:
        answer["reason"] = reason
    if record.run_id:
        answer["run_id"] = record.run_id
    return answer
