"""Planning stages over the release ledger: plan a release from a ci run, and plan a
promotion of a version that passed an environment. The deploys are in :mod:`stages.deploy`,
rollbacks in :mod:`stages.rollback`.
"""

from __future__ import annotations

import asyncio

from shipyard.adapters.blocking import run_blocking
from shipyard.domain.catalog import AppDescriptor, InvalidDescriptor, validate_app_name
from shipyard.domain.images import ImageRef, OptionalRecordedImage, is_digest
from shipyard.domain.states import State
from shipyard.store import Ledger, RunNotFound
from stages.catalog import git_for, read_descriptor_at
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["ReleasePlan", "check_names", "plan_promotion", "plan_release"]


class ReleasePlan(StageResult):
    """Which build of which app goes where: ``image`` is ``None`` when the build has none
    in the registry (ci did not push on that branch), which bake refuses."""

    app: str
    environment: str
    version: str
    commit_sha: str
    ci_run_id: str
    depends_on: list[str]
    repo_url: str = ""
    image: OptionalRecordedImage = None
    descriptor: AppDescriptor | None = None

    def summary(self) -> str:
        return f"{self.app} {self.version} → {self.environment}"


@stage("plan")
async def plan_release(ctx: StageContext, app: str, ci_run_id: str, environment: str,
                       image: ImageRef | None = None) -> ReleasePlan:
    """Check that CI run ``ci_run_id`` succeeded and tested ``app``, read the app's
    descriptor, and pick the version (the commit) and the image: ``image`` as the ci run
    returned it, else the one the run recorded (pushed, or reused unchanged)."""
    check_names(app, environment)
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
    descriptor = await _descriptor(ctx, ci_run.repo_url, ci_run.commit_sha, app)
    if image is None:
        image = await asyncio.to_thread(_recorded_image, ctx, ci_run.id, app,
                                        reused.get(app))
    await ctx.log(f"{app} at {ci_run.commit_sha[:12]} from ci run {ci_run.short_id}; "
                  f"image {image.reference if image else 'not pushed'}")
    return ReleasePlan(app=app, environment=environment, version=ci_run.commit_sha[:12],
                       commit_sha=ci_run.commit_sha, ci_run_id=ci_run.id,
                       depends_on=list(descriptor.depends_on), repo_url=ci_run.repo_url,
                       image=image, descriptor=descriptor)


@stage("plan")
async def plan_promotion(ctx: StageContext, app: str, from_env: str, to_env: str,
                         version: str | None = None) -> ReleasePlan:
    """Plan taking ``app`` into ``to_env`` at the version ``from_env`` runs now, or at
    ``version`` if ``from_env`` ran it: only a version that passed ``from_env`` goes on."""
    check_names(app, from_env, to_env)
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
    descriptor = await _descriptor(ctx, origin.repo_url, origin.commit_sha, app)
    await asyncio.to_thread(ctx.store.record_commit, ctx.run_id, origin.commit_sha)
    await ctx.log(f"{app} {source.version} passed {from_env} (release #{source.id}); "
                  f"promoting to {to_env}")
    image = (ImageRef.of_app(ctx.settings.registry, app, source.digest)
             if is_digest(source.digest) else None)
    return ReleasePlan(app=app, environment=to_env, version=source.version,
                       commit_sha=origin.commit_sha,
                       ci_run_id=origin.id, depends_on=list(descriptor.depends_on),
                       repo_url=origin.repo_url, image=image, descriptor=descriptor)


async def _descriptor(ctx: StageContext, repo_url: str, commit: str,
                      app: str) -> AppDescriptor:
    """``app``'s descriptor at ``commit``; ``InvalidDescriptor`` when it is not valid."""
    try:
        return await run_blocking(read_descriptor_at, git_for(ctx.settings), repo_url, commit,
                                  app)
    except InvalidDescriptor as err:
        raise StageFailure("InvalidDescriptor", str(err)) from err


def _recorded_image(ctx: StageContext, ci_run_id: str, app: str,
                   reused: dict[str, str] | None) -> ImageRef | None:
    """The image ci run ``ci_run_id`` pushed for ``app``, else the one it reused."""
    pushed = next(iter(Ledger(ctx.store).artifacts(app=app, run_id=ci_run_id, kind="image")),
                  None)
    if pushed is not None:
        return ImageRef.of_app(ctx.settings.registry, app, pushed.digest)
    return ImageRef(**reused) if reused else None


def check_names(app: str, *environments: str) -> None:
    """Refuse (``InvalidInput``) an app or environment name that is not a valid one."""
    try:
        validate_app_name(app)
        for env in environments:
            validate_app_name(env)
    except ValueError as err:
        raise StageFailure("InvalidInput", str(err).replace("app name", "name")) from err
