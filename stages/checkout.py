"""Checkout: the exact commit of a ref, in a fresh per-run worktree (GitPython, no shell).
The repository's URL is logged without its credentials."""

from __future__ import annotations

import asyncio

from shipyard.adapters.git import GitCheckout, GitError
from shipyard.domain.redaction import redact_text, redact_url
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["CheckoutResult", "checkout"]


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
@stage("checkout", retries=1, retry_delay_seconds=2, timeout_seconds=600, reusable=False)
async def checkout(ctx: StageContext, repo: str, ref: str) -> CheckoutResult:
    """Clone ``repo`` once into the cache (fetch afterwards) and check ``ref`` out into the
    run's own worktree, named after the run so a retry replaces it."""
    git = GitCheckout(ctx.settings.git_cache_dir, ctx.settings.workspaces_dir)
    await ctx.log(f"fetching {redact_url(repo)} and checking out {ref}")
    try:
        done = await asyncio.to_thread(git.checkout, repo, ref, ctx.run_id)
    except ValueError as err:
        raise StageFailure("InvalidInput", redact_text(str(err))) from err
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
