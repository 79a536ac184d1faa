"""Blocking work in a thread the event loop can abandon: its pauses stop, its calls stop,
and outside such a thread nothing changes."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from shipyard.adapters.blocking import Abandoned, check_abandoned, on_abandon, pause, run_blocking


def test_run_blocking_returns_what_the_work_returns():
    assert asyncio.run(run_blocking(lambda a, b: a + b, 2, b=3)) == 5


def test_run_blocking_raises_what_the_work_raises():
    def fail() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        asyncio.run(run_blocking(fail))


def test_outside_run_blocking_pause_sleeps_and_nothing_is_abandoned():
    started = time.monotonic()
    pause(0.05)
    check_abandoned()
    with on_abandon(lambda: pytest.fail("nothing abandons plain code")):
        pass
    assert time.monotonic() - started >= 0.05


def test_a_cancelled_caller_ends_a_loop_at_its_next_pause():
    rounds: list[int] = []
    ended = threading.Event()

    def poll() -> None:
        try:
            while True:
                rounds.append(1)
                pause(10)
        finally:
            ended.set()

    async def stage() -> None:
        async with asyncio.timeout(0.2):
            await run_blocking(poll)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(stage())
    assert ended.is_set() and len(rounds) == 1
    assert time.monotonic() - started < 5


def test_callbacks_run_when_the_work_is_abandoned_and_not_after_their_block():
    calls: list[str] = []
    inside = threading.Event()

    def work() -> None:
        with on_abandon(lambda: calls.append("left")):
            pass
        with on_abandon(lambda: calls.append("stop")):
            inside.set()
            pause(10)

    async def stage() -> None:
        task = asyncio.ensure_future(run_blocking(work))
        await asyncio.to_thread(inside.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stage())
    assert calls == ["stop"]


def test_abandoned_work_raises_abandoned_at_its_next_check():
    seen: list[BaseException] = []
    inside = threading.Event()

    def work() -> None:
        inside.set()
        time.sleep(0.3)  # a call under way: not interrupted, but the next check stops
        try:
            check_abandoned()
        except Abandoned as err:
            seen.append(err)

    async def stage() -> None:
        task = asyncio.ensure_future(run_blocking(work))
        await asyncio.to_thread(inside.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stage())
    assert len(seen) == 1
