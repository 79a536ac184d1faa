"""Checkout: the exact commit of a ref, in a fresh per-run worktree (GitPython, no shell).
The repository's URL is logged without its credentials."""

from __future__ import annotations

import asyncio

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.git import GitError, GitTimedOut
from shipyard.domain.redaction import redact_text, redact_url
from stages.catalog import git_for
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["CheckoutResult", "checkout"]

# Only a backstop: each git command stops at SHIPYARD_GIT_TIMEOUT_SECONDS (at most an
# hour), and a checkout is a fetch (or a clone) and a few local commands.
STAGE_TIMEOUT_SECONDS = 3 * 3600


class CheckoutResult(StageResult):
    """Where the commit was checked out and what it is."""

    workspace: str
    sha: str
    author: str
    message: str
    changed_files: list[str]
    committed_at: str = ""
    """ISO 8601, UTC: where DORA's lead time for changes starts."""

    def summary(self) -> str:
        title = self.message.splitlines()[0] if self.message else ""
        return f"{self.sha[:12]} by {self.author}: {title}"


# Not reusable: the stages after it work in the worktree it makes.
@stage("checkout", retries=1, retry_delay_seconds=2, timeout_seconds=STAGE_TIMEOUT_SECONDS,
       reusable=False)
async def checkout(ctx: StageContext, repo: str, ref: str) -> CheckoutResult:
    """Clone ``repo`` once into the cache (fetch afterwards) and check ``ref`` out into the
    run's own worktree, named after the run so a retry replaces it."""
    git = git_for(ctx.settings)
    await ctx.log(f"fetching {redact_url(repo)} and checking out {ref}")
    try:
        done = await run_blocking(git.checkout, repo, ref, ctx.run_id)
    except ValueError as err:
        raise StageFailure("InvalidInput", redact_text(str(err))) from err
    except GitTimedOut as err:
        raise StageFailure("TimedOut", str(err)) from err
    except GitError as err:
        raise StageFailure("CheckoutFailed", str(err)) from err
    commit = done.commit
    await asyncio.to_thread(ctx.store.record_commit, ctx.run_id, commit.sha)
    await ctx.log(f"checked out {commit.sha} into {done.workspace}")
    await ctx.log(f"author: {commit.author} <{commit.author_email}>")
    await ctx.log(f"changed files: {len(commit.changed_files)}")
    return CheckoutResult(
        workspace=str(done.workspace), sha=commit.sha, author=commit.author,
        message=commit.message, changed_files=list(commit.changed_files),
        committed_at=commit.committed_at.isoformat(),
    )
