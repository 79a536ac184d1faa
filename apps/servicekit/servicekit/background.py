"""Background tasks a lifespan owns: started with the app, cancelled when it stops.

A loop that heartbeats, evicts or retries must end before the resources it uses are closed,
and its cancellation must not escape as an error of the shutdown that asked for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

__all__ = ["cancel_and_wait", "in_background"]


@contextlib.asynccontextmanager
async def in_background(coroutine: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run `coroutine` as a task while the block runs; when the block ends, however it
    ends, cancel the task and wait until it has finished."""
    task = asyncio.create_task(coroutine)
    try:
        yield task
    finally:
        await cancel_and_wait(task)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (None: nothing to do) and wait until it has finished; the
    CancelledError it ends with goes no further. An error it had already failed with
    is raised here."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
