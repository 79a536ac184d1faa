"""``POST /hooks/github``: GitHub's ``push`` and ``ping`` events, in GitHub's own format.

What happens to a delivery, in order, each step refusing with a 4xx and changing nothing:

1. the body is read up to ``SHIPYARD_WEBHOOK_MAX_BODY_BYTES``, counted as it streams in
   (a Content-Length may lie, or be absent): 413 beyond it;
2. with ``SHIPYARD_WEBHOOK_SECRET`` set, ``X-Hub-Signature-256`` must be the HMAC-SHA256 of
   the raw body: 401 otherwise;
3. the body must be JSON (or GitHub's form encoding of it): 400; ``ping`` is answered 200;
   any other event but ``push`` is answered 202 with the reason it is ignored;
4. a push needs its ``X-GitHub-Delivery`` id (400) and a payload with the fields Shipyard
   relies on (422, naming the field);
5. the trigger rules decide. An ignored push is recorded with its reason; an accepted one
   is recorded with its queued ``ci`` run in one transaction, keyed by the delivery id, so
   a redelivery (even one racing the first) answers with the first's run and starts
   nothing. The answer (202) goes out before Prefect is asked: the reconciler is woken to
   hand the run over in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from shipyard.adapters.git import validate_repo_url
from shipyard.domain.deployments import FIRST_STAGES
from shipyard.domain.push_triggers import TriggerRules, decide
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

__all__ = ["PIPELINE", "WebhookConfig", "Webhooks", "router"]

log = logging.getLogger("shipyard.ui.webhooks")

PIPELINE = "ci"
"""What a push starts."""

_DRAIN_FACTOR = 4  # read (and drop) this much past the limit, so the sender sees the 413

router = APIRouter()


@dataclass(frozen=True)
class WebhookConfig:
    """What the settings say about deliveries, read once."""

    secret: bytes | None
    rules: TriggerRules
    max_body_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        secret = settings.webhook_secret
        return cls(secret=secret.get_secret_value().encode() if secret else None,
                   rules=settings.trigger_rules, max_body_bytes=settings.webhook_max_body_bytes)


@dataclass(frozen=True)
class Webhooks:
    """What the route needs, kept on the application's state."""

    config: WebhookConfig
    ledger: Ledger
    recorded: Callable[[str], None]  # told each new run's id, to hand it over at once


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


def _answer(status: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status)


@router.post("/hooks/github", status_code=202)
async def receive_github_delivery(request: Request) -> JSONResponse:
    """Take one GitHub delivery (see the module's description for every answer)."""
    hooks: Webhooks = request.app.state.webhooks
    config = hooks.config
    try:
        body = await _read_body(request, config.max_body_bytes)
    except _TooLarge:
        return _answer(413, error=f"the body is larger than {config.max_body_bytes} bytes "
                                  "(SHIPYARD_WEBHOOK_MAX_BODY_BYTES)")
    except ClientDisconnect:
        return _answer(400, error="the sender went away before the body was complete")
    if config.secret is not None:
        try:
            verify_signature(config.secret, body, request.headers.get("x-hub-signature-256"))
        except InvalidSignature as err:
            return _answer(401, error=str(err))
    event = request.headers.get("x-github-event", "")
    if not event:
        return _answer(400, error="X-GitHub-Event is missing: which event is this?")
    try:
        payload = decode_body(body, request.headers.get("content-type", ""))
    except MalformedBody as err:
        return _answer(400, error=str(err))
    if event == "ping":
        zen = payload.get("zen", "") if isinstance(payload, dict) else ""
        return _answer(200, pong=True, zen=zen)
    if event != "push":
        return _answer(202, ignored=f"event {event!r} is not handled; Shipyard starts "
                                    "pipelines on push (and answers ping)")
    try:
        delivery_id = validate_delivery_id(request.headers.get("x-github-delivery"))
    except ValueError as err:
        return _answer(400, error=str(err))
    try:
        push = parse_push(payload)
        _check_clone_url(push.clone_url)
    except InvalidPayload as err:
        return _answer(422, error=str(err), field=err.field)
    record, new = await _record(hooks, delivery_id, push)
    if new and record.run_id:
        hooks.recorded(record.run_id)
    log.info("delivery %s: %s%s", delivery_id, record.detail, "" if new else " (redelivery)")
    answer: dict[str, Any] = {"delivery": delivery_id}
    if not new:
        answer["redelivery"] = True
    if record.run_id is None:
        return _answer(202, ignored=record.detail, **answer)
    return _answer(202, run_id=record.run_id, pipeline=PIPELINE, **answer)


def _check_clone_url(url: str) -> None:
    try:
        validate_repo_url(url)
    except (ValueError, OSError, RuntimeError) as err:  # OSError: a name too long to look up
        raise InvalidPayload("repository.clone_url", str(err)) from err


async def _record(hooks: Webhooks, delivery_id: str,
                  push: Push) -> tuple[DeliveryRecord, bool]:
    decision = decide(push, hooks.config.rules)
    if not decision.accepted:
        return await asyncio.to_thread(hooks.ledger.record_delivery, delivery_id=delivery_id,
                                       event="push", outcome="ignored", detail=decision.reason)
    parameters = {"repo": push.clone_url, "ref": push.after,
                  "branch": push.name if push.kind == "branch" else None}
    return await asyncio.to_thread(
        hooks.ledger.accept_delivery, delivery_id=delivery_id, event="push",
        detail=decision.reason, pipeline=PIPELINE, stages=FIRST_STAGES[PIPELINE],
        trigger="push", actor=push.pusher, repo_url=push.clone_url, ref=push.name,
        commit_sha=push.after, parameters=parameters)
