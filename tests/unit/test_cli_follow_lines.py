"""Off a terminal (CI logs, pipes), a followed run is told as one flushed line per change
of state, the run first, then its stages, and ends with the stage table."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from shipyard.cli import pipelines
from shipyard.domain.clock import FrozenClock
from shipyard.domain.states import State
from shipyard.store import RunRecord, StageRecord

T0 = datetime(2026, 3, 1, 12, 3, 0, tzinfo=UTC)
RUN_ID = "a1b2c3d4" + "e" * 24


def stage(ref: str, state: State = State.QUEUED, *, reason: str = "", message: str = "",
          seconds: float | None = None) -> StageRecord:
    started = T0 if state is not State.QUEUED else None
    finished = T0 + timedelta(seconds=seconds) if seconds is not None else None
    return StageRecord(ref=ref, name=ref, requires=(), state=state, reason=reason,
                       message=message, attempts=1, started_at=started,
                       finished_at=finished)


def run(state: State, *stages: StageRecord, reason: str = "", message: str = "",
        seconds: float | None = None) -> RunRecord:
    return RunRecord(id=RUN_ID, pipeline="release", app=None, trigger="cli", actor="ann",
                     repo_url=None, ref="main", commit_sha=None, parameters={},
                     state=state, reason=reason, message=message, created_at=T0,
                     started_at=T0 if state is not State.QUEUED else None,
                     finished_at=T0 + timedelta(seconds=seconds) if seconds else None,
                     prefect_flow_run_id=None, restarted_from=None, stages=stages)


class FlushedFile(io.StringIO):
    """Keeps what had been flushed, so a test can tell a line written from a line seen."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed = ""

    def flush(self) -> None:
        super().flush()
        self.flushed = self.getvalue()


def plain_console(file: io.StringIO) -> Console:
    return Console(file=file, force_terminal=False, width=180)


async def records_a_second_apart(records: Iterable[RunRecord],
                                 clock: FrozenClock) -> AsyncIterator[RunRecord]:
    for record in records:
        clock.advance(1)
        yield record


def follow(records: list[RunRecord], out: Console) -> RunRecord:
    clock = FrozenClock(T0)
    return asyncio.run(pipelines._follow_lines(
        records[0], records_a_second_apart(records, clock), out=out, clock=clock,
        prefect_ui=None))


def state_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(r"\d\d:\d\d:\d\d  ", line)]


DEPLOY = "deploy:staging/discovery"
A_RELEASE = [
    run(State.QUEUED, stage("ci"), stage(DEPLOY)),
    run(State.RUNNING, stage("ci", State.RUNNING), stage(DEPLOY)),
    run(State.RUNNING, stage("ci", State.RUNNING), stage(DEPLOY)),
    run(State.RUNNING, stage("ci", State.SUCCEEDED, seconds=4.2),
        stage(DEPLOY, State.RUNNING)),
    run(State.SUCCEEDED, stage("ci", State.SUCCEEDED, seconds=4.2),
        stage(DEPLOY, State.SUCCEEDED, seconds=61), reason="Succeeded", seconds=65.2),
]


def test_each_change_of_state_is_one_line_in_order_the_run_before_its_stages() -> None:
    out = io.StringIO()

    final = follow(A_RELEASE, plain_console(out))

    assert final is A_RELEASE[-1]
    assert state_lines(out.getvalue()) == [
        "12:03:01  release a1b2c3d4  queued",
        "12:03:02  release a1b2c3d4  running",
        "12:03:02  release a1b2c3d4  stage ci running",
        "12:03:04  release a1b2c3d4  stage ci succeeded in 4.2s",
        f"12:03:04  release a1b2c3d4  stage {DEPLOY} running",
        "12:03:05  release a1b2c3d4  succeeded in 1m05s",
        f"12:03:05  release a1b2c3d4  stage {DEPLOY} succeeded in 1m01s",
    ]


def test_the_stage_table_of_the_last_record_follows_the_lines() -> None:
    out = io.StringIO()

    follow(A_RELEASE, plain_console(out))

    output = out.getvalue()
    assert output.index("Stages") > output.index("succeeded in 1m05s")
    assert "✔ succeeded" in output.split("Stages")[1]


def test_a_failed_stage_line_carries_its_reason_and_message_on_one_line() -> None:
    failing = [
        run(State.RUNNING, stage(DEPLOY, State.RUNNING)),
        run(State.FAILED, stage(DEPLOY, State.FAILED, reason="RolloutFailed",
                                message="discovery: 0/3 pods ready\n  CrashLoopBackOff",
                                seconds=4.2),
            reason="StageFailed", message=f"failed: {DEPLOY} RolloutFailed", seconds=5),
    ]
    out = io.StringIO()

    follow(failing, plain_console(out))

    assert state_lines(out.getvalue())[-2:] == [
        "12:03:02  release a1b2c3d4  failed in 5.0s: StageFailed: "
        f"failed: {DEPLOY} RolloutFailed",
        f"12:03:02  release a1b2c3d4  stage {DEPLOY} failed in 4.2s: RolloutFailed: "
        "discovery: 0/3 pods ready CrashLoopBackOff",
    ]


def test_a_message_with_square_brackets_is_printed_as_written() -> None:
    failing = [run(State.RUNNING, stage("test:web", State.FAILED, reason="TestsFailed",
                                        message="[bold]2 failed[/bold]", seconds=1))]
    out = io.StringIO()

    follow(failing, plain_console(out))

    assert state_lines(out.getvalue())[-1].endswith("TestsFailed: [bold]2 failed[/bold]")


def test_every_line_is_flushed_before_the_next_record_is_read() -> None:
    out = FlushedFile()
    flushed_when_asked: list[str] = []

    async def records() -> AsyncIterator[RunRecord]:
        for record in A_RELEASE:
            flushed_when_asked.append(out.flushed)
            yield record

    asyncio.run(pipelines._follow_lines(A_RELEASE[0], records(), out=plain_console(out),
                                        clock=FrozenClock(T0), prefect_ui=None))

    assert [len(state_lines(seen)) for seen in flushed_when_asked] == [0, 1, 3, 3, 5]


def test_off_a_terminal_follow_live_prints_lines_instead_of_a_live_display(
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    asked: list[tuple[str, float]] = []

    def fake_follow_run(store: object, run_id: str, *,
                        timeout_seconds: float) -> AsyncIterator[RunRecord]:
        asked.append((run_id, timeout_seconds))
        return records_a_second_apart(A_RELEASE, FrozenClock(T0))

    monkeypatch.setattr(pipelines, "console", plain_console(out))
    monkeypatch.setattr(pipelines, "store", lambda: None)
    monkeypatch.setattr(pipelines, "follow_run", fake_follow_run)
    monkeypatch.setattr(pipelines, "prefect_ui_url", lambda: None)

    final = asyncio.run(pipelines._follow_live(A_RELEASE[0], 60))

    assert final is A_RELEASE[-1]
    assert asked == [(RUN_ID, 60)]
    lines = state_lines(out.getvalue())
    assert lines[0].endswith("release a1b2c3d4  queued")
    assert lines[-1].endswith(f"stage {DEPLOY} succeeded in 1m01s")
