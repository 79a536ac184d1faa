"""Stages over the release ledger: plan a release from a ci run, plan a promotion of a
version that passed an environment, and roll an environment back to a recorded release
(in the cluster, then in the ledger). The deploys themselves are in :mod:`stages.deploy`.
"""

from __future__ import annotations

import asyncio

from shipyard.adapters.git import GitCheckout, GitError
from shipyard.domain.catalog import AppDescriptor, InvalidDescriptor, validate_app_name
from shipyard.domain.states import State
from shipyard.store import DeployLocks, Ledger, ReleaseRecord, RunNotFound
from stages.catalog import read_descriptor_at
from stages.changes import image_repository
from stages.cluster import open_kube
from stages.rollouts import restore_release
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["ReleasePlan", "ReleaseResult", "plan_promotion", "plan_release",
           "rollback_release"]


class ReleasePlan(StageResult):
    """Which build of which app goes where."""

    app: str
    environment: str
    version: str
    digest: str
    commit_sha: str
    ci_run_id: str
    depends_on: list[str]
    repo_url: str = ""
    image: str = ""
    descriptor: AppDescriptor | None = None

    def summary(self) -> str:
        return f"{self.app} {self.version} → {self.environment}"


class ReleaseResult(StageResult):
    """A release as recorded in the ledger."""

    release_id: int
    app: str
    environment: str
    version: str
    kind: str
    mode: str = ""
    source_release_id: int | None = None
    revert_branch: str = ""
    revert_commit: str = ""

    def summary(self) -> str:
        source = f" (from release #{self.source_release_id})" if self.source_release_id else ""
        how = f", {self.mode}" if self.mode else ""
        return (f"release #{self.release_id}: {self.app} {self.version} in "
                f"{self.environment}, {self.kind}{source}{how}")


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
    image = (f"{ctx.settings.registry}/{image_repository(app)}@{digest}"
             if digest.startswith("sha256:") else "")
    return ReleasePlan(app=app, environment=environment, version=ci_run.commit_sha[:12],
                       digest=digest, commit_sha=ci_run.commit_sha, ci_run_id=ci_run.id,
                       depends_on=list(descriptor.depends_on), repo_url=ci_run.repo_url,
                       image=image, descriptor=descriptor)


@stage("plan")
async def plan_promotion(ctx: StageContext, app: str, from_env: str, to_env: str,
                         version: str | None = None) -> ReleasePlan:
    """Plan taking ``app`` into ``to_env`` at the version ``from_env`` runs now, or at
    ``version`` if ``from_env`` ran it: only a version that passed ``from_env`` goes on."""
    _check_names(app, from_env, to_env)
    if from_env == to_env:
        raise StageFailure("InvalidInput", "promote needs two different environments")
    ledger = Ledger(ctx.store)
    history = await asyncio.to_thread(ledger.releases, app, from_env, limit=500)
    if not history:
        raise StageFailure("NothingToPromote", f"{app} has no release in {from_env} yet")
    source = history[0] if version is None else next(
        (r for r in history if r.version == version or r.version.startswith(version)), None)
    if source is None:
        known = ", ".join(dict.fromkeys(r.version for r in history[:10]))
        raise StageFailure("NothingToPromote", f"{app} {version} never ran in {from_env}; "
                           f"versions that did: {known}")
    origin = await asyncio.to_thread(ctx.store.get_run, source.run_id) if source.run_id \
        else None
    if origin is None or not origin.commit_sha or not origin.repo_url:
        raise StageFailure("NothingToPromote", f"release #{source.id} of {app} has no "
                           "commit on record to bake from")
    git = GitCheckout(ctx.settings.git_cache_dir, ctx.settings.workspaces_dir)
    try:
        descriptor = await asyncio.to_thread(read_descriptor_at, git, origin.repo_url,
                                             origin.commit_sha, app)
    except InvalidDescriptor as err:
        raise StageFailure("InvalidDescriptor", str(err)) from err
    await asyncio.to_thread(ctx.store.record_commit, ctx.run_id, origin.commit_sha)
    await ctx.log(f"{app} {source.version} passed {from_env} (release #{source.id}); "
                  f"promoting to {to_env}")
    image = (f"{ctx.settings.registry}/{image_repository(app)}@{source.digest}"
             if source.digest.startswith("sha256:") else "")
    return ReleasePlan(app=app, environment=to_env, version=source.version,
                       digest=source.digest, commit_sha=origin.commit_sha,
                       ci_run_id=origin.id, depends_on=list(descriptor.depends_on),
                       repo_url=origin.repo_url, image=image, descriptor=descriptor)


@stage("rollback")
async def rollback_release(ctx: StageContext, app: str, environment: str,
                           to: str | None, actor: str, why: str,
                           revert: bool = False) -> ReleaseResult:
    """Make ``environment`` run an earlier release again: ``to`` (a release id from the
    app's history there, or a version) or, by default, the newest one with another
    version than now. The previous version, still warm, gets the traffic back at once;
    otherwise its recorded manifests are applied again. With ``revert``, the source
    repository gets a branch that puts the app's directory back as it was at that version,
    so the source of truth can follow the cluster."""
    _check_names(app, environment)
    ledger = Ledger(ctx.store)
    history = await asyncio.to_thread(ledger.releases, app, environment, limit=500)
    if not history:
        raise StageFailure("NothingToRollBack", f"{app} has no release in {environment}")
    current = history[0]
    target = _rollback_target(history, to)
    if target is None:
        wanted = f"release {to}" if to else "an earlier version"
        raise StageFailure("NothingToRollBack",
                           f"{app} in {environment} has no {wanted} to roll back to "
                           f"(now {current.version}, release #{current.id})")
    locks = DeployLocks(ctx.store)
    holder = await asyncio.to_thread(locks.acquire, app, environment, ctx.run_id)
    if holder is not None:
        other = await asyncio.to_thread(ctx.store.get_run, holder)
        raise StageFailure("DeployInProgress",
                           f"{app} in {environment} is being deployed by {other.pipeline} "
                           f"run {other.short_id}; roll back once it ends (or cancel it)")
    try:
        result = await _roll_back(ctx, app, environment, current, target, actor, why)
    finally:
        await asyncio.to_thread(locks.release, app, environment, ctx.run_id)
    if revert:
        branch, sha = await _push_revert(ctx, app, environment, current, target, why)
        result = result.model_copy(update={"revert_branch": branch, "revert_commit": sha})
    return result


async def _push_revert(ctx: StageContext, app: str, environment: str, current: ReleaseRecord,
                       target: ReleaseRecord, why: str) -> tuple[str, str]:
    """Push a branch reverting ``app``'s directory from ``current``'s commit to
    ``target``'s; the rollback in the cluster stands whatever happens here."""
    now = await asyncio.to_thread(_origin_commit, ctx, current)
    then = await asyncio.to_thread(_origin_commit, ctx, target)
    if now is None or then is None:
        raise StageFailure("RevertImpossible", f"the commits of {app} {current.version} and "
                           f"{target.version} are not on record; the rollback itself is done")
    repo_url, head = now
    branch = f"shipyard/revert-{app}-{current.version}"
    message = (f"Revert {app} to {target.version}\n\nShipyard rolled {app} back in "
               f"{environment} from {current.version} to {target.version} (rollback run "
               f"{ctx.run_id[:8]}): {why or 'no reason given'}\n")
    git = GitCheckout(ctx.settings.git_cache_dir, ctx.settings.workspaces_dir)
    try:
        sha = await asyncio.to_thread(git.push_revert, repo_url, base=head,
                                      restore_from=then[1], path=f"apps/{app}",
                                      branch=branch, message=message)
    except GitError as err:
        raise StageFailure("RevertFailed", f"{err}; the rollback itself is done") from err
    await ctx.log(f"pushed {branch} ({sha[:12]}) to {repo_url}: apps/{app} as at "
                  f"{then[1][:12]}")
    return branch, sha


def _origin_commit(ctx: StageContext, release: ReleaseRecord) -> tuple[str, str] | None:
    """The repository and commit a release was built from: its run's, or for a promote or
    rollback (whose runs build nothing) the release it came from."""
    ledger = Ledger(ctx.store)
    seen = 0
    while release is not None and seen < 100:
        if release.run_id:
            run = ctx.store.get_run(release.run_id)
            if run.commit_sha and run.repo_url:
                return run.repo_url, run.commit_sha
        if release.source_release_id is None:
            return None
        release = ledger.release(release.source_release_id)
        seen += 1
    return None


async def _roll_back(ctx: StageContext, app: str, environment: str, current: ReleaseRecord,
                     target: ReleaseRecord, actor: str, why: str) -> ReleaseResult:
    ledger = Ledger(ctx.store)
    namespace = ctx.settings.namespace_for(environment)
    kube = await open_kube(ctx, namespace)
    await ctx.log(f"{app} in {environment}: {current.version} → {target.version} "
                  f"(release #{target.id}{', ' + target.slot if target.slot else ''})")
    mode = await restore_release(kube, app, namespace, target,
                                 ctx.log, timeout_seconds=ctx.settings.rollout_timeout_seconds)
    row = await asyncio.to_thread(
        ledger.record_release, app=app, version=target.version, environment=environment,
        kind="rollback", digest=target.digest, manifests=target.manifests, slot=target.slot,
        actor=actor or "shipyard", why=why or f"rollback from {current.version}",
        run_id=ctx.run_id, source_release_id=target.id)
    return _result(row, mode=mode)


def _rollback_target(history: list[ReleaseRecord], to: str | None) -> ReleaseRecord | None:
    current = history[0]
    if to:
        if to.isdigit():
            return next((r for r in history[1:] if r.id == int(to)), None)
        return next((r for r in history[1:] if r.version.startswith(to)), None)
    return next((r for r in history if r.version != current.version), None)


def _check_names(app: str, *environments: str) -> None:
    try:
        validate_app_name(app)
        for env in environments:
            validate_app_name(env)
    except ValueError as err:
        raise StageFailure("InvalidInput", str(err).replace("app name", "name")) from err


def _result(row: ReleaseRecord, mode: str = "") -> ReleaseResult:
    return ReleaseResult(release_id=row.id, app=row.app, environment=row.environment,
                         version=row.version, kind=row.kind, mode=mode,
                         source_release_id=row.source_release_id)
