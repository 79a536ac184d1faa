"""What the CLI reports as a one-line error rather than a traceback."""

from __future__ import annotations

import sys

from rich.console import Console

from shipyard.adapters.git import GitError
from shipyard.adapters.prefect_errors import PrefectError
from shipyard.adapters.prefect_server import ProcessError
from shipyard.domain.deployments import InvalidProjectFile
from shipyard.domain.pipeline import InvalidPipeline
from shipyard.domain.states import TransitionForbidden
from shipyard.store import StoreError
from shipyard.store.engine import StoreConfigError

__all__ = ["EXPECTED_ERRORS", "CommandFailed", "console", "err_console"]

# Piped output (CI logs, `| less`) gets a wide page rather than 80 truncated columns.
console = Console(width=None if sys.stdout.isatty() else 180)
err_console = Console(stderr=True, soft_wrap=True)


class CommandFailed(Exception):
    """The command ran but its outcome is a failure (exit 1); the message says why, or is
    empty when the output already did."""


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    StoreError, StoreConfigError, TransitionForbidden, InvalidPipeline, InvalidProjectFile,
    PrefectError, ProcessError, GitError, ValueError, LookupError, TimeoutError, OSError,
    RuntimeError,
)
