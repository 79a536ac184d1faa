"""Detached background processes identified by pid files: the local stack's servers.

A process is started in a session of its own (it outlives the command that started it and
a stop can signal its whole group), logs to a file and is recorded as ``pid starttime`` so
that a pid reused by an unrelated process after a reboot or crash is never mistaken for it
(and never signalled).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BackgroundProcess", "tail_file"]


@dataclass(frozen=True, slots=True)
class BackgroundProcess:
    """The process ``name`` whose pid file and log live in ``home``."""

    name: str
    home: Path

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of our live process, or None (a stale pid file is removed)."""
        try:
            pid_text, _, started = self.pid_file.read_text().strip().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        if _start_time(pid) is None or (started and _start_time(pid) != started):
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> int:
        """Start ``argv`` detached, appending its output to the log; record its pid."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: "
                      f"{' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(argv), cwd=cwd or self.home, env=dict(env) if env is not None else None,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{process.pid} {_start_time(process.pid) or ''}".strip())
        return process.pid

    def stop(self, *, terms: int = 1, grace_seconds: float = 15) -> bool:
        """SIGTERM the process group ``terms`` times (a Prefect worker needs two), then
        SIGKILL it if it still runs. Returns whether a process was running."""
        pid = self.pid()
        if pid is None:
            return False
        for _ in range(terms):
            _signal_group(pid, signal.SIGTERM)
            if _wait_gone(pid, grace_seconds / terms):
                break
        else:
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 5)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the log, for error messages."""
        return tail_file(self.log_file, lines)


def tail_file(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat),
    or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            reaped, _ = os.waitpid(pid, os.WNOHANG)
            if reaped == pid:
                return True
        if _start_time(pid) is None:
            return True
        time.sleep(0.1)
    return False
