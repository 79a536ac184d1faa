"""Running a program with a deadline: real child process trees (local ``sh`` and
``sleep``), stopped as a whole at the deadline, when their work is abandoned, and when
they exit leaving something behind."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from shipyard.adapters.blocking import Abandoned, run_blocking
from shipyard.adapters.process import run_process

# The shell prints its pid, which is its process group's id (it leads a group of its own),
# then starts a second sleeper beside the first: a tree of three processes.
TREE = ["sh", "-c", "echo $$; sleep 60 & sleep 60"]


def group_gone(pgid: int, *, within: float = 10.0) -> bool:
    """Whether no process of group ``pgid`` is left. A killed grandchild is reparented and
    stays a zombie until its new parent (pid 1 here) reaps it: give that a moment."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class Lines:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, line: str) -> None:
        self.seen.append(line)

    @property
    def pgid(self) -> int:
        return int(self.seen[0])


def test_a_program_that_ends_gives_its_exit_code_and_last_lines():
    done = run_process(["sh", "-c", "echo one; echo two >&2; exit 3"], timeout_seconds=10)
    assert (done.exit_code, done.timed_out) == (3, False)
    assert done.tail == ("one", "two")
    assert done.last_lines() == "one | two"


def test_each_line_reaches_on_line_in_order():
    lines = Lines()
    run_process(["sh", "-c", "for i in 1 2 3; do echo $i; done"], timeout_seconds=10,
                on_line=lines)
    assert lines.seen == ["1", "2", "3"]


def test_at_its_deadline_the_whole_process_group_is_killed():
    lines = Lines()
    started = time.monotonic()
    done = run_process(TREE, timeout_seconds=0.5, on_line=lines)
    assert done.timed_out
    assert time.monotonic() - started < 5
    assert group_gone(lines.pgid)


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace():
    lines = Lines()
    done = run_process(["sh", "-c", "trap '' TERM; echo $$; sleep 60 & sleep 60"],
                       timeout_seconds=0.3, grace_seconds=0.3, on_line=lines)
    assert done.timed_out and done.exit_code == -9
    assert group_gone(lines.pgid)


def test_what_a_program_leaves_running_in_its_group_is_killed_when_it_exits():
    lines = Lines()
    started = time.monotonic()
    done = run_process(["sh", "-c", "echo $$; sleep 60 >/dev/null 2>&1 &"],
                       timeout_seconds=10, on_line=lines)
    assert (done.exit_code, done.timed_out) == (0, False)
    assert time.monotonic() - started < 5
    assert group_gone(lines.pgid)


def test_a_cancelled_caller_kills_the_process_group_of_its_thread():
    lines = Lines()

    async def stage() -> None:
        async with asyncio.timeout(0.5):
            await run_blocking(run_process, TREE, timeout_seconds=60, on_line=lines)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(stage())
    assert time.monotonic() - started < 5
    assert group_gone(lines.pgid)


def test_abandoned_work_starts_no_further_process():
    started: list[str] = []

    def two_programs() -> None:
        run_process(["sleep", "60"], timeout_seconds=60)
        started.append("second")
        run_process(["true"], timeout_seconds=60)

    async def stage() -> None:
        async with asyncio.timeout(0.3):
            await run_blocking(two_programs)

    with pytest.raises(TimeoutError):
        asyncio.run(stage())
    assert started == []


def test_run_process_raises_abandoned_in_the_thread_it_ran_in():
    outcome: list[BaseException] = []

    def program() -> None:
        try:
            run_process(["sleep", "60"], timeout_seconds=60)
        except Abandoned as err:
            outcome.append(err)
            raise

    async def stage() -> None:
        async with asyncio.timeout(0.3):
            await run_blocking(program)

    with pytest.raises(TimeoutError):
        asyncio.run(stage())
    assert len(outcome) == 1 and "sleep was stopped" in str(outcome[0])
