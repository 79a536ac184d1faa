"""Judgment answers signed by Shipyard, so a judgment knows who answered and by which route.

An answer reaches a waiting judgment through Prefect (a paused or suspended flow run is
resumed with it), and anyone who can use Prefect's API can resume a flow run with any input
that fits the schema. So Shipyard signs each answer it gives (``shipyard approve|reject``,
the UI, the API) with a key only Shipyard holds, and the judgment takes only an answer whose
signature it verifies.

The signature is HMAC-SHA256 (RFC 2104) over :meth:`AnswerClaims.message`: the run, the
stage, the nonce of the judgment request it answers, the decision, the actor, the route, the
comment, the time it was given and a nonce of its own. A symmetric key is enough: every
process that signs or verifies (the CLI, the UI, the worker's flows) is Shipyard on the
machine that holds the key; no party needs to verify without being able to sign.

What binds an answer to one judgment: the verifier does not take the run, stage or request
from the answer but puts in its own, so an answer given to another run, another stage or
an earlier judgment request (each waiting judgment draws a fresh request nonce) fails the
check, and so does one given after the judgment's deadline.

Pure: no I/O, no clock, no randomness; the caller supplies the key, the time and the nonces.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

__all__ = ["KEY_BYTES", "ROUTES", "AnswerClaims", "Decision", "InvalidKey", "Route",
           "UnverifiedAnswer", "parse_key", "sign", "verify"]

Decision = Literal["approve", "reject"]
Route = Literal["cli", "ui-session", "api-token"]
"""How an answer came: the ``shipyard`` CLI on the machine that holds the store, a signed-in
browser session, or an API token."""
ROUTES: tuple[Route, ...] = get_args(Route)

KEY_BYTES = 32
_SCHEME = "hmac-sha256"
_CONTEXT = b"shipyard judgment answer v1\n"  # a signature for nothing else Shipyard signs


class InvalidKey(ValueError):
    """The signing key is not ``KEY_BYTES`` or more bytes written as hex."""


class UnverifiedAnswer(Exception):
    """An answer the judgment cannot take: ``reason`` (CamelCase) and a message saying why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AnswerClaims:
    """What Shipyard vouches for: this answer, by ``actor`` via ``route``, to the judgment
    that stage ``stage`` of run ``run_id`` asked as request ``request``."""

    run_id: str
    stage: str
    request: str
    decision: str  # a Decision; a str, since the judgment checks answers from anyone
    actor: str
    route: str  # a Route, likewise
    comment: str
    issued_at: datetime
    nonce: str

    def message(self) -> bytes:
        """The exact bytes signed: canonical JSON (sorted keys, no spaces, UTF-8), the time
        in UTC to the microsecond, after a context line of its own."""
        fields = {"run_id": self.run_id, "stage": self.stage, "request": self.request,
                  "decision": self.decision, "actor": self.actor, "route": self.route,
                  "comment": self.comment, "issued_at": _instant(self.issued_at),
                  "nonce": self.nonce}
        return _CONTEXT + json.dumps(fields, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode("utf-8")

    def to_input(self, key: bytes) -> dict[str, Any]:
        """The answer as the judgment's flow run is resumed with it: the claims but the
        request (the judgment knows which it asked), and the signature."""
        return {"run_id": self.run_id, "stage": self.stage, "decision": self.decision,
                "actor": self.actor, "route": self.route, "comment": self.comment,
                "answered_at": _instant(self.issued_at), "nonce": self.nonce,
                "signature": sign(self, key)}


def parse_key(text: str) -> bytes:
    """The key written as hex (``KEY_BYTES`` or more bytes); raise :class:`InvalidKey`."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError as err:
        raise InvalidKey(f"not hex: {err}") from err
    if len(key) < KEY_BYTES:
        raise InvalidKey(f"{len(key)} bytes; a judgment key has at least {KEY_BYTES}")
    return key


def sign(claims: AnswerClaims, key: bytes) -> str:
    """``hmac-sha256=<hex>`` over the claims' :meth:`~AnswerClaims.message`. Raises
    ValueError for a decision or route Shipyard does not give."""
    if claims.decision not in get_args(Decision) or claims.route not in ROUTES:
        raise ValueError(f"no answer is signed with decision {claims.decision!r} and route "
                         f"{claims.route!r}")
    digest = hmac.new(key, claims.message(), hashlib.sha256).hexdigest()
    return f"{_SCHEME}={digest}"


def verify(claims: AnswerClaims, signature: str, key: bytes, *, deadline: datetime,
           addressed: tuple[str, str] | None = None) -> None:
    """Accept ``claims`` (made with the waiting judgment's own run, stage and request)
    signed with ``key`` and given by ``deadline``; raise :class:`UnverifiedAnswer` with the
    reason otherwise: ``Unsigned``, ``OtherJudgment`` (``addressed``, the run and stage the
    answer says it is for, are not the claims'), ``UnknownDecision``, ``UnknownRoute``,
    ``BadSignature`` (forged, altered, or given to another judgment request) or
    ``AnsweredLate``."""
    if not signature:
        raise UnverifiedAnswer("Unsigned", "it carries no signature, so it did not come "
                               "through Shipyard (`shipyard approve|reject`, the UI or the "
                               "API)")
    if addressed is not None and addressed != (claims.run_id, claims.stage):
        run_id, stage = addressed
        raise UnverifiedAnswer("OtherJudgment", f"it answers stage {stage!r} of run "
                               f"{run_id!r}, not this judgment")
    if claims.decision not in get_args(Decision):
        raise UnverifiedAnswer("UnknownDecision", f"its decision {claims.decision!r} is "
                               "neither approve nor reject")
    if claims.route not in ROUTES:
        raise UnverifiedAnswer("UnknownRoute", f"its route {claims.route!r} is none of "
                               f"{', '.join(ROUTES)}")
    if not hmac.compare_digest(signature.encode("utf-8"), sign(claims, key).encode()):
        raise UnverifiedAnswer("BadSignature", "its signature does not verify with "
                               "Shipyard's judgment key: it was forged or altered, or it "
                               "was given to another judgment")
    if _utc(claims.issued_at) > _utc(deadline):
        raise UnverifiedAnswer("AnsweredLate", f"it was given at {_instant(claims.issued_at)}, "
                               f"after the judgment's deadline {_instant(deadline)}")


def _utc(moment: datetime) -> datetime:
    # A time without a zone is taken as UTC, as Shipyard writes every time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _instant(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
