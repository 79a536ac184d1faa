"""Stages' full logs on disk: ``<home>/logs/<run id>/<stage>.log``, for the owner only.

The store keeps the first ``SHIPYARD_STAGE_LOG_MAX_LINES`` lines of a stage's log and a
marker for the rest (:mod:`shipyard.domain.stage_logs`); the flows append every line
here as well, before the store sees it, so whatever the store drops is on disk. A file is
made mode 0600 in a directory made 0700 (the text may hold what a build printed), and
appended to, never rewritten: a retried attempt, or a judgment resumed in another
process, carries on where the last one stopped. ``shipyard gc`` removes a run's directory
with the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from shipyard.adapters.secret_files import private_dir
from shipyard.domain.stage_logs import log_file_name

__all__ = ["StageLogFile", "existing_run_logs", "remove_run_logs", "run_logs_dir"]

_RUN_ID = re.compile(r"[0-9A-Za-z]{1,64}")
_CHUNK = 1 << 20


def run_logs_dir(logs_dir: Path, run_id: str) -> Path:
    """The directory of one run's stage logs under ``logs_dir``."""
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r} is not a run id: letters and digits only")
    return logs_dir / run_id


class StageLogFile:
    """The full log of one stage of one run."""

    def __init__(self, logs_dir: Path, run_id: str, ref: str) -> None:
        self.path = run_logs_dir(logs_dir, run_id) / log_file_name(ref)

    def append(self, text: str) -> None:
        """Add ``text`` at the end, making the file (0600) and its directories (0700)."""
        private_dir(self.path.parent)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(self.path, flags, 0o600), "a", encoding="utf-8",
                       errors="backslashreplace") as out:
            out.write(text)

    def exists(self) -> bool:
        return self.path.is_file()

    def digest(self) -> str:
        """``sha256:`` and the hex digest of what the file holds now."""
        hashed = hashlib.sha256()
        with self.path.open("rb") as opened:
            while block := opened.read(_CHUNK):
                hashed.update(block)
        return f"sha256:{hashed.hexdigest()}"

    def remove(self) -> None:
        """Delete the file, and the run's directory once it is empty."""
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # another stage's log is still there
            self.path.parent.rmdir()


def existing_run_logs(logs_dir: Path, run_ids: Iterable[str]) -> list[Path]:
    """The log directories of those of ``run_ids`` that have one."""
    found = (run_logs_dir(logs_dir, run_id) for run_id in run_ids)
    return [directory for directory in found
            if directory.is_dir() and not directory.is_symlink()]


def remove_run_logs(logs_dir: Path, run_ids: Iterable[str]) -> int:
    """Delete the stage logs of each run in ``run_ids``; return how many runs had some."""
    directories = existing_run_logs(logs_dir, run_ids)
    for directory in directories:
        shutil.rmtree(directory)
    return len(directories)
