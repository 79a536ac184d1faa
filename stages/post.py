"""Post actions that always run at the end of a pipeline (Jenkins's ``post { always }``):
the run's worktree and build contexts are removed, so disk use stays bounded. A failure
here is logged and never changes the run's outcome."""

from __future__ import annotations

import asyncio
import logging
import shutil

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.git import GitError
from stages.catalog import git_for
from stages.runtime import RunContext, current_settings

__all__ = ["clean_up"]

logger = logging.getLogger(__name__)


async def clean_up(run: RunContext, repo: str) -> None:
    """Remove ``run``'s worktree of ``repo`` and its build contexts."""
    settings = current_settings()
    try:
        await run_blocking(git_for(settings).remove_workspace, repo, run.run_id)
    except (GitError, ValueError, OSError) as err:
        logger.warning("post: could not remove the worktree of run %s: %s", run.run_id, err)
    await asyncio.to_thread(shutil.rmtree, settings.home / "build" / run.run_id, True)
