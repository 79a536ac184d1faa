"""Running a program to its end with a deadline: the one way Shipyard starts a short-lived
process (git, pip, a Go build, the Prefect CLI).

No shell: the program and its arguments are a list. The child runs in a process group of
its own (``start_new_session``), so stopping it stops everything it started (pytest's
workers, a build's compilers, git's remote helpers): SIGTERM to the group, then SIGKILL
after :data:`TERM_GRACE_SECONDS`. That happens at its deadline, when the work that started it
is abandoned (:mod:`shipyard.adapters.blocking`: a stage that timed out or was cancelled),
and, for whatever it left behind, when it exits. Its output (stdout and stderr, merged, in
order) is passed on line by line and its last lines are kept for error messages.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shipyard.adapters.blocking import Abandoned, check_abandoned, on_abandon

__all__ = ["TERM_GRACE_SECONDS", "ProcessResult", "run_process"]

TERM_GRACE_SECONDS = 5.0
"""How long a stopped process group has between SIGTERM and SIGKILL: enough for git or pip
to remove a lock file, not enough to hold up a stage's end."""


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """How a program ended: its exit code (negative: the signal that killed it), whether
    its deadline stopped it, how long it ran and its last lines of output."""

    exit_code: int
    timed_out: bool
    seconds: float
    tail: tuple[str, ...]

    def last_lines(self, count: int = 3) -> str:
        """The last ``count`` lines of output, joined for one line of an error message."""
        return " | ".join(line for line in self.tail[-count:] if line.strip())


def run_process(argv: Sequence[str], *, timeout_seconds: float, cwd: Path | None = None,
                env: Mapping[str, str] | None = None,
                on_line: Callable[[str], None] | None = None, tail_lines: int = 20,
                grace_seconds: float = TERM_GRACE_SECONDS) -> ProcessResult:
    """Run ``argv`` to its end, passing each output line to ``on_line``.

    Past ``timeout_seconds`` its process group is stopped and the result says
    ``timed_out``; the caller's error names what ran too long and the setting to raise.
    Raises :class:`~shipyard.adapters.blocking.Abandoned` if the work that called it was
    abandoned (the group is stopped first). When it exits, any process it left in its group
    is killed: nothing it started outlives it.
    """
    check_abandoned()
    started = time.monotonic()
    process = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    assert process.stdout is not None
    group = _Group(process, grace_seconds)
    watchdog = threading.Thread(target=group.watch, args=(timeout_seconds,), daemon=True,
                                name=f"deadline of {Path(argv[0]).name} {process.pid}")
    tail: deque[str] = deque(maxlen=tail_lines)
    with on_abandon(lambda: group.stop("abandoned")):
        watchdog.start()
        try:
            for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                tail.append(line)
                if on_line is not None:
                    on_line(line)
        except BaseException:
            group.stop("failed")  # on_line raised: the output has nobody to go to
            raise
        finally:
            code = group.reap()
            process.stdout.close()
    if group.reason == "abandoned":
        raise Abandoned(f"{Path(argv[0]).name} was stopped: the work that started it was "
                        "abandoned")
    return ProcessResult(exit_code=code, timed_out=group.reason == "timeout",
                         seconds=time.monotonic() - started, tail=tuple(tail))


class _Group:
    """A child leading a process group of its own: stopped as a whole, reaped once.

    Until it is reaped, the child (running, or a zombie) keeps its pid, which names the
    group, so a signal to the group can never reach an unrelated process that got the
    pid later: signals and the reap take the same lock.
    """

    def __init__(self, process: subprocess.Popen[bytes], grace_seconds: float) -> None:
        self.process = process
        self.grace_seconds = grace_seconds
        self.reason: Literal["", "timeout", "abandoned", "failed"] = ""
        self._lock = threading.Lock()
        self._reaped = False
        self._stop = threading.Event()
        self._finished = threading.Event()

    def stop(self, reason: Literal["timeout", "abandoned", "failed"]) -> None:
        """Have the watchdog stop the group now (from any thread; does not block)."""
        with self._lock:
            if not self.reason and not self._reaped:
                self.reason = reason
        self._stop.set()

    def watch(self, timeout_seconds: float) -> None:
        """The watchdog: at the deadline or a stop, SIGTERM the group, then SIGKILL it
        after the grace period if it has not ended."""
        if not self._stop.wait(timeout_seconds):
            self.stop("timeout")
        with self._lock:
            if self._reaped:
                return
        self._signal(signal.SIGTERM)
        if not self._finished.wait(self.grace_seconds):
            self._signal(signal.SIGKILL)

    def reap(self) -> int:
        """Wait for the child to exit, kill what it left in its group, reap it; its exit
        code."""
        pid = self.process.pid
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
        with self._lock:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            code = self.process.wait()
            self._reaped = True
        self._finished.set()
        self._stop.set()
        return code

    def _signal(self, sig: signal.Signals) -> None:
        with self._lock:
            if not self._reaped:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, sig)
