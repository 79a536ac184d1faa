"""Stages over the release ledger: plan a release from a CI run, record it, promote it to
the next environment, roll it back.

These record what was decided and why; applying it to Kubernetes (bake, deploy, canary,
red/black) joins as stages of its own, between plan and record, with the CD pipeline issue.
"""

from __future__ import annotations

import asyncio

from shipyard.adapters.git import GitCheckout
from shipyard.domain.catalog import InvalidDescriptor, validate_app_name
from shipyard.domain.states import State
from shipyard.store import Ledger, ReleaseRecord, RunNotFound
from stages.catalog import read_descriptor_at
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["ReleasePlan", "ReleaseResult", "plan_release", "promote_release",
           "record_release", "rollback_release"]


class ReleasePlan(StageResult):
    """Which build of which app goes where."""

    app: str
    environment: str
    version: str
    digest: str
    commit_sha: str
    ci_run_id: str
    depends_on: list[str]

    def summary(self) -> str:
        return f"{self.app} {self.version} → {self.environment}"


class ReleaseResult(StageResult):
    """A release as recorded in the ledger."""

    release_id: int
    app: str
    environment: str
    version: str
    kind: str
    source_release_id: int | None = None

    def summary(self) -> str:
        source = f" (from release #{self.source_release_id})" if self.source_release_id else ""
        return (f"release #{self.release_id}: {self.app} {self.version} in "
                f"{self.environment}, {self.kind}{source}")


@stage("plan")
async def plan_release(ctx: StageContext, app: str, ci_run_id: str,
                       environment: str) -> ReleasePlan:
    """Check that CI run ``ci_run_id`` succeeded and tested ``app``, read the app's
    descriptor, and pick the version (the commit) and image digest (if one was built)."""
    _check_names(app, environment)
    try:
        ci_run = await asyncio.to_thread(ctx.store.get_run, ci_run_id)
    except RunNotFound as err:
        raise StageFailure("UnknownRun", str(err)) from err
    if ci_run.pipeline != "ci" or ci_run.state is not State.SUCCEEDED:
        raise StageFailure("BuildNotReleasable",
                           f"run {ci_run.short_id} is a {ci_run.pipeline} run in state "
                           f"{ci_run.state.value}; only a succeeded ci run can be released")
    if not ci_run.commit_sha or not ci_run.repo_url:
        raise StageFailure("BuildNotReleasable", f"ci run {ci_run.short_id} has no commit")
    succeeded = {s.ref for s in ci_run.stages if s.state is State.SUCCEEDED}
    reused = ci_run.stage("changes").outputs.get("reused", {}) if "changes" in succeeded \
        else {}
    if f"test:{app}" not in succeeded and app not in reused:
        raise StageFailure("AppNotBuilt", f"ci run {ci_run.short_id} neither built nor "
                           f"reused an image of {app}")
    await asyncio.to_thread(ctx.store.record_commit, ctx.run_id, ci_run.commit_sha)
    git = GitCheckout(ctx.settings.git_cache_dir, ctx.settings.workspaces_dir)
    try:
        descriptor = await asyncio.to_thread(read_descriptor_at, git, ci_run.repo_url,
                                             ci_run.commit_sha, app)
    except InvalidDescriptor as err:
        raise StageFailure("InvalidDescriptor", str(err)) from err
    images = await asyncio.to_thread(Ledger(ctx.store).artifacts, app=app, run_id=ci_run.id)
    digest = next((a.digest for a in images if a.kind == "image"), reused.get(app, ""))
    await ctx.log(f"{app} at {ci_run.commit_sha[:12]} from ci run {ci_run.short_id}; "
                  f"image {digest or 'not built yet'}")
    return ReleasePlan(app=app, environment=environment, version=ci_run.commit_sha[:12],
                       digest=digest, commit_sha=ci_run.commit_sha, ci_run_id=ci_run.id,
                       depends_on=list(descriptor.depends_on))


@stage("record")
async def record_release(ctx: StageContext, plan: ReleasePlan, actor: str,
                         why: str) -> ReleaseResult:
    """Record the planned version as what ``plan.environment`` should run."""
    row = await asyncio.to_thread(
        Ledger(ctx.store).record_release, app=plan.app, version=plan.version,
        environment=plan.environment, kind="deploy", digest=plan.digest,
        actor=actor or "shipyard", why=why or f"ci run {plan.ci_run_id[:8]}",
        run_id=ctx.run_id)
    return _result(row)


@stage("promote")
async def promote_release(ctx: StageContext, app: str, from_env: str, to_env: str,
                          actor: str, why: str) -> ReleaseResult:
    """Make ``to_env`` run what ``from_env`` runs now."""
    _check_names(app, from_env, to_env)
    if from_env == to_env:
        raise StageFailure("InvalidInput", "promote needs two different environments")
    ledger = Ledger(ctx.store)
    source = await asyncio.to_thread(ledger.current_release, app, from_env)
    if source is None:
        raise StageFailure("NothingToPromote", f"{app} has no release in {from_env} yet")
    current = await asyncio.to_thread(ledger.current_release, app, to_env)
    if current is not None and current.version == source.version:
        await ctx.log(f"{to_env} already runs {app} {source.version}; recording it again")
    row = await asyncio.to_thread(
        ledger.record_release, app=app, version=source.version, environment=to_env,
        kind="promote", digest=source.digest, manifests=source.manifests,
        actor=actor or "shipyard", why=why or f"promoted from {from_env}",
        run_id=ctx.run_id, source_release_id=source.id)
    return _result(row)


@stage("rollback")
async def rollback_release(ctx: StageContext, app: str, environment: str,
                           to_release: int | None, actor: str, why: str) -> ReleaseResult:
    """Make ``environment`` run an earlier release again: ``to_release`` (an id from the
    app's history there) or, by default, the newest one with another version than now."""
    _check_names(app, environment)
    ledger = Ledger(ctx.store)
    history = await asyncio.to_thread(ledger.releases, app, environment, limit=200)
    if not history:
        raise StageFailure("NothingToRollBack", f"{app} has no release in {environment}")
    current = history[0]
    target = _rollback_target(history, to_release)
    if target is None:
        wanted = f"release #{to_release}" if to_release else "an earlier version"
        raise StageFailure("NothingToRollBack",
                           f"{app} in {environment} has no {wanted} to roll back to "
                           f"(now {current.version}, release #{current.id})")
    row = await asyncio.to_thread(
        ledger.record_release, app=app, version=target.version, environment=environment,
        kind="rollback", digest=target.digest, manifests=target.manifests,
        actor=actor or "shipyard", why=why or f"rollback from {current.version}",
        run_id=ctx.run_id, source_release_id=target.id)
    await ctx.log(f"{app} in {environment}: {current.version} → {target.version}")
    return _result(row)


def _rollback_target(history: list[ReleaseRecord], to_release: int | None) -> ReleaseRecord | None:
    current = history[0]
    if to_release is not None:
        return next((r for r in history[1:] if r.id == to_release), None)
    return next((r for r in history if r.version != current.version), None)


def _check_names(app: str, *environments: str) -> None:
    try:
        validate_app_name(app)
        for env in environments:
            validate_app_name(env)
    except ValueError as err:
        raise StageFailure("InvalidInput", str(err).replace("app name", "name")) from err


def _result(row: ReleaseRecord) -> ReleaseResult:
    return ReleaseResult(release_id=row.id, app=row.app, environment=row.environment,
                         version=row.version, kind=row.kind,
                         source_release_id=row.source_release_id)
