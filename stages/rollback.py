"""Rollback, in one room: make an environment run a recorded release again, in the
cluster (verified by probes, like the forward switch), then in the ledger.

Two stages use it: ``rollback_release``, the ``rollback`` pipeline's one stage (an operator
asks for an earlier release of one app), and ``roll_back_delivery``, the ``rollback`` stage
of every delivery (a failure anywhere gives every environment the run changed its previous
release back, dependents first). A rollback succeeds only when the cluster serves the
target: a switch that never settles fails it with ``SwitchNotVerified`` and records nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from graphlib import TopologicalSorter
from typing import ClassVar

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.git import GitError
from shipyard.adapters.kube import Kube
from shipyard.domain.states import State
from shipyard.store import Ledger, ReleaseRecord, StageRecord
from stages.catalog import git_for
from stages.cluster import open_kube
from stages.locks import hold_locks, release_locks
from stages.releases import ReleasePlan, check_names
from stages.rollouts import restore_release
from stages.runtime import RunContext, StageContext, StageFailure, StageResult, stage

__all__ = ["ReleaseResult", "RollbackResult", "dependency_order", "restore_and_record",
           "roll_back_delivery", "rollback_release"]


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
    check_names(app, environment)
    held = [(app, environment)]
    # The lock first: a promote or release that ran meanwhile changes what "now" is.
    await hold_locks(ctx, held)
    try:
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
        result = await _roll_back(ctx, app, environment, current, target, actor, why)
    finally:
        await release_locks(RunContext(ctx.run_id), held)
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
    try:
        sha = await run_blocking(git_for(ctx.settings).push_revert, repo_url, base=head,
                                 restore_from=then[1], path=f"apps/{app}", branch=branch,
                                 message=message)
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
    kube = await open_kube(ctx, ctx.settings.namespace_for(environment))
    await ctx.log(f"{app} in {environment}: {current.version} → {target.version} "
                  f"(release #{target.id}{', ' + target.slot if target.slot else ''})")
    mode, row = await restore_and_record(
        ctx, kube, app, environment, target, actor=actor,
        why=why or f"rollback from {current.version}")
    assert row is not None  # a target was given
    return _result(row, mode=mode)


def _rollback_target(history: list[ReleaseRecord], to: str | None) -> ReleaseRecord | None:
    current = history[0]
    if to:
        if to.isdigit():
            return next((r for r in history[1:] if r.id == int(to)), None)
        return next((r for r in history[1:] if r.version.startswith(to)), None)
    return next((r for r in history if r.version != current.version), None)




def _result(row: ReleaseRecord, mode: str = "") -> ReleaseResult:
    return ReleaseResult(release_id=row.id, app=row.app, environment=row.environment,
                         version=row.version, kind=row.kind, mode=mode,
                         source_release_id=row.source_release_id)


async def restore_and_record(ctx: StageContext, kube: Kube, app: str, environment: str,
                             target: ReleaseRecord | None, *, actor: str, why: str,
                             record: bool = True) -> tuple[str, ReleaseRecord | None]:
    """Make ``environment`` run ``target`` of ``app`` again (nothing of it when None) and,
    when ``record`` and there is a target, write the rollback release to the ledger.
    Returns how it was restored (``warm``, ``reapplied``, ``removed``) and the release
    written. Raises :class:`StageFailure` (``SwitchNotVerified``) when traffic never
    reached the target; then nothing is recorded."""
    ledger = Ledger(ctx.store)
    intent = None
    if target is not None and record and target.slot:
        # Before traffic moves back: a lost record is recorded from it (shipyard.domain.drift).
        intent = await asyncio.to_thread(
            ledger.record_intent, app=app, environment=environment, kind="rollback",
            version=target.version, slot=target.slot, digest=target.digest,
            manifests=target.manifests, actor=actor or "shipyard", why=why[:2000],
            run_id=ctx.run_id, source_release_id=target.id)
    mode = await restore_release(kube, app, ctx.settings.namespace_for(environment), target,
                                 ctx.log, timeout_seconds=ctx.settings.rollout_timeout_seconds)
    if target is None or not record:
        return mode, None
    row = await asyncio.to_thread(
        ledger.record_release, app=app, version=target.version,
        environment=environment, kind="rollback", digest=target.digest,
        manifests=target.manifests, slot=target.slot, actor=actor or "shipyard",
        why=why[:2000], run_id=ctx.run_id, source_release_id=target.id,
        intent_id=intent.id if intent else None)
    return mode, row


class RollbackResult(StageResult):
    """What a delivery's rollback undid (``env:app (mode)``), and why."""

    undone: list[str]
    cause: str

    success_reason: ClassVar[str] = "RolledBack"

    def summary(self) -> str:
        return f"undid {', '.join(self.undone) or 'nothing (nothing deployed)'}"


# Not reusable: a restart that fails rolls its own changes back.
@stage("rollback", reusable=False)
async def roll_back_delivery(ctx: StageContext, plans: list[ReleasePlan],
                             environments: list[str], actor: str,
                             cause: str) -> RollbackResult:
    """Give every environment this run changed its previous release back, dependents
    first, and mark the deploys undone. Fails with ``RollbackFailed`` (naming what was
    undone so far) when one cannot be restored."""
    record = await asyncio.to_thread(ctx.store.get_run, ctx.run_id)
    by_ref = {s.ref: s for s in record.stages}
    failed = [s for s in record.stages if s.state is State.FAILED]
    why = ("; ".join(f"{s.ref}: {s.reason}: {s.message}" for s in failed) or cause)[:2000]
    await ctx.log(f"rolling back because {why}")
    ledger = Ledger(ctx.store)
    undone: list[str] = []
    try:
        for env in reversed(environments):
            kube: Kube | None = None  # opened as the environment's identity when needed
            for plan in reversed(dependency_order(plans)):
                deploy = by_ref.get(f"{env}:{plan.app}")
                if deploy is None or deploy.state not in (State.SUCCEEDED, State.FAILED):
                    continue
                target = await asyncio.to_thread(_previous, ledger, deploy, plan.app, env)
                await ctx.log(f"{env}: rolling {plan.app} back to "
                              f"{target.version if target else 'nothing'}")
                kube = kube or await open_kube(ctx, ctx.settings.namespace_for(env))
                # A failed deploy never recorded its release: the ledger is still right.
                mode, _ = await restore_and_record(
                    ctx, kube, plan.app, env, target, actor=actor,
                    why=f"coordinated rollback of run {ctx.run_id[:8]}: {why}",
                    record=deploy.state is State.SUCCEEDED)
                if deploy.state is State.SUCCEEDED:  # a failed one keeps its own reason
                    await ctx.mark_rolled_back(deploy.ref,
                                               f"rolled back ({mode}) because {why}"[:2000])
                undone.append(f"{deploy.ref} ({mode})")
    except Exception as err:
        raise StageFailure("RollbackFailed", f"{type(err).__name__}: {err}; undone so far: "
                           f"{', '.join(undone) or 'nothing'}", {"undone": undone}) from err
    return RollbackResult(undone=undone, cause=why)


def _previous(ledger: Ledger, deploy: StageRecord, app: str,
              environment: str) -> ReleaseRecord | None:
    """What ``environment`` ran before ``deploy``: the release it replaced, if it recorded
    one; for a failed deploy (which recorded nothing), what the ledger says runs now."""
    if deploy.state is State.FAILED:
        return ledger.current_release(app, environment)
    previous_id = deploy.outputs.get("previous_release_id")
    return ledger.release(previous_id) if previous_id else None


def dependency_order(plans: Sequence[ReleasePlan]) -> list[ReleasePlan]:
    """``plans`` with every app after the apps it depends on (among ``plans``)."""
    by_app = {p.app: p for p in plans}
    order = TopologicalSorter({p.app: [d for d in p.depends_on if d in by_app]
                               for p in plans}).static_order()
    return [by_app[app] for app in order]
