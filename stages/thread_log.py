"""A stage's log for code that runs in worker threads (a build's output, a container's).

``ctx.log`` is a coroutine of the stage's event loop, and it may flush to the store: calls
from a thread that each became a task of their own could flush side by side and land in
the store out of order. :class:`ThreadLog` queues the lines and one task logs them, in
order.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from stages.runtime import StageContext

__all__ = ["ThreadLog"]


class ThreadLog:
    """``async with ThreadLog(ctx) as log:`` gives ``log(line)``, callable from any thread;
    leaving the block waits until every line given so far is in the stage's log."""

    def __init__(self, ctx: StageContext) -> None:
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ThreadLog:
        self._writer = asyncio.create_task(self._write())
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        try:
            if not isinstance(error, asyncio.CancelledError):
                await self.drain()
        finally:
            assert self._writer is not None
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    def __call__(self, line: str) -> None:
        self._loop.call_soon_threadsafe(self._lines.put_nowait, line)

    async def drain(self) -> None:
        """Wait until the lines given so far are logged. A thread's lines are all queued
        by the time code awaiting that thread resumes: the loop runs callbacks in order."""
        await self._lines.join()

    async def _write(self) -> None:
        while True:
            line = await self._lines.get()
            try:
                await self._ctx.log(line)
            finally:
                self._lines.task_done()
