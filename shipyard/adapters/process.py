"""Running a program and streaming its output line by line, with a deadline.

No shell: the program and its arguments are a list. The child runs in its own process
group, so a timeout kills everything it started (pytest's workers, a build's children).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessResult", "run_streaming"]


@dataclass(frozen=True, slots=True)
class ProcessResult:
    exit_code: int
    timed_out: bool


async def run_streaming(
    argv: Sequence[str],
    *,
    cwd: Path,
    on_line: Callable[[str], Awaitable[None]],
    env: Mapping[str, str] | None = None,
    timeout_seconds: float | None = None,
) -> ProcessResult:
    """Run ``argv`` in ``cwd``, passing each line of its stdout and stderr (merged, in
    order) to ``on_line``. On timeout the process group gets SIGTERM, then SIGKILL."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=dict(env) if env is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
    )
    assert process.stdout is not None

    async def pump() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            await on_line(raw.decode(errors="replace"))
        await process.wait()

    try:
        await asyncio.wait_for(pump(), timeout_seconds)
    except TimeoutError:
        await _kill_group(process)
        return ProcessResult(exit_code=process.returncode or -9, timed_out=True)
    except asyncio.CancelledError:
        await _kill_group(process)
        raise
    assert process.returncode is not None
    return ProcessResult(exit_code=process.returncode, timed_out=False)


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if process.returncode is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            continue
