"""Repairing the ledger to what the cluster serves: from an intent whose record was lost,
from an earlier release traffic went back to, and never by guessing."""

from __future__ import annotations

from shipyard.domain.drift import Intent, Recorded, repair_for

V1 = Recorded(1, "aaa", "v001")
V2 = Recorded(2, "bbb", "v002")


def intent(slot: str, version: str = "ccc", intent_id: int = 7) -> Intent:
    return Intent(intent_id, "r" * 32, slot, version, "deploy")


def test_agreement_with_nothing_pending_needs_nothing():
    assert repair_for(V2, "v002", [], [V2, V1]) is None
    assert repair_for(None, "", [], []) is None


def test_a_switch_whose_record_was_lost_is_recorded_from_its_intent():
    switched = intent("v003")
    drift = repair_for(V2, "v003", [switched], [V2, V1])
    assert drift is not None and drift.action == "record-intent"
    assert drift.intent == switched and drift.stale == ()
    assert "serves v003 (ccc)" in drift.message and "release #2 (v002)" in drift.message


def test_the_newest_intent_for_the_served_slot_wins_and_the_others_are_stale():
    older, newer, other = intent("v003", intent_id=7), intent("v003", intent_id=8), \
        intent("v004", intent_id=9)
    drift = repair_for(V2, "v003", [older, newer, other], [V2, V1])
    assert drift is not None and drift.intent == newer
    assert set(drift.stale) == {older, other}  # superseded, or never took effect


def test_an_intent_that_never_took_effect_is_settled_as_stale():
    never = intent("v003")
    drift = repair_for(V2, "v002", [never], [V2, V1])
    assert drift is not None and drift.action == "settle-stale" and drift.stale == (never,)


def test_traffic_back_on_an_earlier_release_is_recorded_as_a_rollback_to_it():
    drift = repair_for(V2, "v001", [], [V2, V1])
    assert drift is not None and drift.action == "record-rollback" and drift.earlier == V1


def test_a_slot_nothing_names_is_reported_not_guessed():
    drift = repair_for(V2, "v009", [], [V2, V1])
    assert drift is not None and drift.action == "unexplained"
    assert drift.intent is None and drift.earlier is None
    assert "no release or intent names" in drift.message


def test_an_app_the_cluster_no_longer_serves_is_reported():
    drift = repair_for(V2, "", [], [V2, V1])
    assert drift is not None and drift.action == "unexplained"
    assert "serves no slot" in drift.message


def test_a_first_switch_lost_before_any_release_was_recorded():
    drift = repair_for(None, "v001", [intent("v001")], [])
    assert drift is not None and drift.action == "record-intent"
    assert "no release" in drift.message
