"""The start-time check of Shipyard's secret files and state directories, as the commands
report it: ``shipyard up`` says what it tightened, ``shipyard status`` warns, and
``shipyard ui`` refuses to start until the modes are fixed (see
:mod:`shipyard.adapters.private_state` for what is checked)."""

from __future__ import annotations

from collections.abc import Iterable

from shipyard.adapters.private_state import check_private_state
from shipyard.cli.errors import CommandFailed, err_console
from shipyard.domain.file_modes import TooOpen
from shipyard.settings import Settings

__all__ = ["open_state_warnings", "report_tightened", "require_private_state"]


def report_tightened(problems: Iterable[TooOpen]) -> None:
    """One warning line per path ``shipyard up`` made private."""
    for problem in problems:
        err_console.print(f"warning: {problem.tightened_message}", markup=False,
                          highlight=False)


def open_state_warnings(settings: Settings) -> list[str]:
    """Print a warning naming the fix for each secret file or state directory others can
    reach; returns the messages (for ``status --json``)."""
    messages = [problem.message for problem in check_private_state(settings)]
    for message in messages:
        err_console.print(f"warning: {message}", markup=False, highlight=False)
    return messages


def require_private_state(settings: Settings, what: str) -> None:
    """Refuse to go on (``what`` is the command's purpose, for the message) while a secret
    file or state directory is open to others: each is named with its mode and its fix."""
    problems = check_private_state(settings)
    if not problems:
        return
    for problem in problems:
        err_console.print(f"  {problem.message}", markup=False, highlight=False)
    raise CommandFailed(f"refusing to {what}: {len(problems)} secret file(s) or state "
                        "directories can be reached by other users (above); fix their "
                        "modes, or run `shipyard up`, which tightens them")
