"""Which unfinished runs lost their process: on evidence only (Prefect's word on the flow
run, or a heartbeat gone quiet while Prefect says it runs), never on silence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shipyard.domain.states import State
from shipyard.domain.sweeps import FlowRunView, RunView, abandonment
from shipyard.settings import Settings

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LIMIT = timedelta(seconds=120)
GRACE = timedelta(seconds=30)


def run(state: State = State.RUNNING, *, beat_ago: float | None = 5,
        flow_run: str | None = "f-1") -> RunView:
    beat = NOW - timedelta(seconds=beat_ago) if beat_ago is not None else None
    return RunView(state, NOW - timedelta(hours=1), NOW - timedelta(minutes=59), beat,
                   flow_run)


def judge(view: RunView, flow: FlowRunView | None) -> str | None:
    return abandonment(view, flow, now=NOW, heartbeat_limit=LIMIT, grace=GRACE)


def prefect(state: str, *, ago: float = 600, message: str = "") -> FlowRunView:
    return FlowRunView(state, message, NOW - timedelta(seconds=ago))


def test_a_run_whose_flow_run_prefect_no_longer_has_is_abandoned():
    evidence = judge(run(), None)
    assert evidence is not None and "no longer has its flow run f-1" in evidence


def test_a_run_whose_flow_run_crashed_is_abandoned_with_prefects_message():
    evidence = judge(run(), prefect("CRASHED", message="Process exited with code -9"))
    assert evidence is not None
    assert "ended CRASHED 10m00s ago: Process exited with code -9" in evidence


def test_a_flow_run_that_just_ended_gets_a_grace_period_for_its_last_write():
    assert judge(run(), prefect("COMPLETED", ago=10)) is None
    assert judge(run(), prefect("COMPLETED", ago=31)) is not None


def test_a_quiet_heartbeat_while_prefect_says_running_is_evidence():
    assert judge(run(beat_ago=119), prefect("RUNNING")) is None
    evidence = judge(run(beat_ago=121), prefect("RUNNING"))
    assert evidence is not None and "no heartbeat for 2m01s (limit 2m00s)" in evidence


def test_a_run_that_never_beat_is_judged_from_when_it_started():
    assert judge(run(beat_ago=None), prefect("PENDING")) is not None  # started 59 min ago


@pytest.mark.parametrize("state", ["PAUSED", "SCHEDULED", "CANCELLING"])
def test_a_flow_run_with_no_process_to_beat_is_left_alone(state):
    assert judge(run(beat_ago=3600), prefect(state)) is None


def test_a_run_waiting_for_a_judgment_is_judged_by_its_flow_run_not_its_heartbeat():
    waiting = run(State.WAITING, beat_ago=3600)
    assert judge(waiting, prefect("RUNNING")) is None  # a resumed flow run, starting up
    assert judge(waiting, prefect("CANCELLED")) is not None
    assert judge(waiting, None) is not None


@pytest.mark.parametrize("state", [State.SUCCEEDED, State.FAILED, State.CANCELLED])
def test_a_final_run_is_never_abandoned(state):
    assert judge(run(state), None) is None


def test_a_run_no_flow_run_took_is_the_hand_overs_not_the_sweepers():
    assert judge(run(State.QUEUED, flow_run=None, beat_ago=None), None) is None


def test_the_abandon_limit_must_span_several_heartbeats():
    with pytest.raises(ValidationError, match="SHIPYARD_ABANDON_AFTER_SECONDS"):
        Settings(heartbeat_seconds=10, abandon_after_seconds=20)
    assert Settings(heartbeat_seconds=10, abandon_after_seconds=30).abandon_after_seconds == 30
