"""Background tasks: cancelled and awaited when their block ends."""

from __future__ import annotations

import asyncio

import pytest
from servicekit.background import cancel_and_wait, in_background


async def forever(ticks: list[str]) -> None:
    try:
        while True:
            await asyncio.sleep(0)
            ticks.append("tick")
    finally:
        ticks.append("cleaned up")


def test_the_task_runs_during_the_block_and_has_finished_when_it_ends() -> None:
    async def scenario() -> tuple[list[str], asyncio.Task[None]]:
        ticks: list[str] = []
        async with in_background(forever(ticks)) as task:
            while not ticks:
                await asyncio.sleep(0)
        return ticks, task

    ticks, task = asyncio.run(scenario())
    assert task.cancelled()
    assert ticks[0] == "tick" and ticks[-1] == "cleaned up"


def test_an_error_in_the_block_still_ends_the_task() -> None:
    ticks: list[str] = []

    async def scenario() -> None:
        async with in_background(forever(ticks)):
            while not ticks:
                await asyncio.sleep(0)
            raise LookupError("the block failed")

    with pytest.raises(LookupError):
        asyncio.run(scenario())
    assert ticks[-1] == "cleaned up"


def test_cancelling_no_task_does_nothing() -> None:
    asyncio.run(cancel_and_wait(None))
