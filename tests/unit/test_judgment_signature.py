"""Judgment answers signed by Shipyard, as plain data: what is signed, and every answer a
judgment must refuse."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shipyard.domain.judgment_signature import (
    KEY_BYTES,
    ROUTES,
    AnswerClaims,
    InvalidKey,
    UnverifiedAnswer,
    parse_key,
    sign,
    verify,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ASKED = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DEADLINE = ASKED + timedelta(hours=4)

CLAIMS = AnswerClaims(run_id="7f0c2a9e-run", stage="judgment", request="req-nonce-1",
                      decision="approve", actor="ada", route="cli",
                      comment="canary clean, chaos passed ✓",
                      issued_at=ASKED + timedelta(minutes=5), nonce="answer-nonce-1")


def refusal(claims: AnswerClaims, signature: str, key: bytes = KEY,
            addressed: tuple[str, str] | None = None) -> str:
    with pytest.raises(UnverifiedAnswer) as raised:
        verify(claims, signature, key, deadline=DEADLINE, addressed=addressed)
    return raised.value.reason


def test_an_answer_signed_with_the_key_verifies():
    verify(CLAIMS, sign(CLAIMS, KEY), KEY, deadline=DEADLINE,
           addressed=(CLAIMS.run_id, CLAIMS.stage))


def test_the_signature_is_hmac_sha256_over_the_canonical_claims():
    expected = hmac.new(KEY, CLAIMS.message(), hashlib.sha256).hexdigest()
    assert sign(CLAIMS, KEY) == f"hmac-sha256={expected}"
    assert CLAIMS.message() == (
        b"shipyard judgment answer v1\n"
        + '{"actor":"ada","comment":"canary clean, chaos passed ✓","decision":"approve",'
          '"issued_at":"2026-11-26T12:05:00.000000Z","nonce":"answer-nonce-1",'
          '"request":"req-nonce-1","route":"cli","run_id":"7f0c2a9e-run",'
          '"stage":"judgment"}'.encode())


def test_the_same_instant_in_another_zone_signs_alike():
    elsewhere = CLAIMS.issued_at.astimezone(timezone(timedelta(hours=-5)))
    assert sign(dataclasses.replace(CLAIMS, issued_at=elsewhere), KEY) == sign(CLAIMS, KEY)


def test_a_time_without_a_zone_is_taken_as_utc():
    naive = CLAIMS.issued_at.replace(tzinfo=None)
    assert sign(dataclasses.replace(CLAIMS, issued_at=naive), KEY) == sign(CLAIMS, KEY)


def test_an_unsigned_answer_is_refused():
    assert refusal(CLAIMS, "") == "Unsigned"


def test_an_answer_signed_with_another_key_is_refused():
    assert refusal(CLAIMS, sign(CLAIMS, OTHER_KEY)) == "BadSignature"


@pytest.mark.parametrize("field, value", [
    ("decision", "approve"), ("actor", "mallory"), ("route", "api-token"),
    ("comment", "lgtm"), ("issued_at", ASKED + timedelta(minutes=6)), ("nonce", "other"),
])
def test_an_answer_altered_after_signing_is_refused(field, value):
    rejected = dataclasses.replace(CLAIMS, decision="reject", comment="error rate doubled")
    altered = dataclasses.replace(rejected, **{field: value})
    assert refusal(altered, sign(rejected, KEY)) == "BadSignature"


@pytest.mark.parametrize("field, value", [
    ("run_id", "another-run"), ("stage", "judgment-2"), ("request", "req-nonce-2")])
def test_an_answer_given_to_another_judgment_is_refused(field, value):
    # The verifier puts in the judgment's own run, stage and request: the signature is for
    # the first, so a replay to any other fails.
    waiting = dataclasses.replace(CLAIMS, **{field: value})
    assert refusal(waiting, sign(CLAIMS, KEY)) == "BadSignature"


def test_an_answer_saying_it_is_for_another_judgment_is_refused_as_such():
    with pytest.raises(UnverifiedAnswer, match="answers stage 'judgment' of run 'other-run'"):
        verify(CLAIMS, sign(CLAIMS, KEY), KEY, deadline=DEADLINE,
               addressed=("other-run", "judgment"))
    assert refusal(CLAIMS, sign(CLAIMS, KEY), addressed=("other-run", "judgment")) == \
        "OtherJudgment"


def test_an_answer_given_after_the_deadline_is_refused():
    late = dataclasses.replace(CLAIMS, issued_at=DEADLINE + timedelta(microseconds=1))
    assert refusal(late, sign(late, KEY)) == "AnsweredLate"
    on_time = dataclasses.replace(CLAIMS, issued_at=DEADLINE)
    verify(on_time, sign(on_time, KEY), KEY, deadline=DEADLINE)


def test_an_answer_by_a_route_shipyard_does_not_sign_is_refused():
    claims = dataclasses.replace(CLAIMS, route="prefect-ui")
    assert refusal(claims, "hmac-sha256=" + "0" * 64) == "UnknownRoute"


def test_shipyard_signs_only_its_own_routes_and_decisions():
    assert ROUTES == ("cli", "ui-session", "api-token")
    with pytest.raises(ValueError, match="route 'prefect-ui'"):
        sign(dataclasses.replace(CLAIMS, route="prefect-ui"), KEY)
    with pytest.raises(ValueError, match="decision 'maybe'"):
        sign(dataclasses.replace(CLAIMS, decision="maybe"), KEY)


def test_the_resume_input_carries_the_claims_but_the_request_and_the_signature():
    answer = CLAIMS.to_input(KEY)
    assert answer == {"run_id": "7f0c2a9e-run", "stage": "judgment", "decision": "approve",
                      "actor": "ada", "route": "cli",
                      "comment": "canary clean, chaos passed ✓",
                      "answered_at": "2026-11-26T12:05:00.000000Z",
                      "nonce": "answer-nonce-1", "signature": sign(CLAIMS, KEY)}


def test_a_key_is_32_bytes_or_more_of_hex():
    assert parse_key(KEY.hex() + "\n") == KEY
    assert len(parse_key("ab" * 64)) == 64
    with pytest.raises(InvalidKey, match=f"at least {KEY_BYTES}"):
        parse_key("ab" * 31)
    with pytest.raises(InvalidKey, match="not hex"):
        parse_key("not a key at all")
