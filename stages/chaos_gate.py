"""The chaos gate of a delivery: the app's chaos experiment on the new version in the
environment the pipeline names (the one before production, staging by default), scaled
for the experiment to the replicas its descriptor asks for (``chaos.replicas``) and back
afterwards, whatever the verdict.

The experiment is the Chaos Toolkit file the descriptor names (``chaos.experiment``,
relative to the app's folder), read from the release's commit, never from a worktree: what
runs is what was reviewed with the release. Without one, the gate generates the default.
"""

from __future__ import annotations

from typing import Any

from shipyard.adapters import chaos_toolkit
from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.git import GitError
from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.chaos_experiments import InvalidChaosExperiment
from shipyard.domain.labels import APP_LABEL, TRACK_LABEL, label_selector
from shipyard.domain.redaction import redact_url
from stages.catalog import git_for
from stages.chaos import CHAOS_TIMEOUT_SECONDS, ChaosResult, run_chaos_verification
from stages.cluster import open_kube
from stages.rollouts import service_url
from stages.runtime import StageContext, StageFailure, stage

__all__ = ["chaos_gate"]


# A verdict is never reused: a restart experiments again.
@stage("chaos", timeout_seconds=CHAOS_TIMEOUT_SECONDS + 300, reusable=False)
async def chaos_gate(ctx: StageContext, descriptor: AppDescriptor, environment: str,
                     window_seconds: float, repo_url: str = "",
                     commit_sha: str = "") -> ChaosResult:
    """Scale ``descriptor``'s app in ``environment`` to ``chaos.replicas``, run its chaos
    experiment (its ``chaos.experiment`` file at ``commit_sha`` of ``repo_url``, or the
    default: ``chaos.kill`` pods killed under load), and scale it back."""
    experiment = None
    source = ""
    if descriptor.chaos.experiment:
        experiment, source = await _experiment_file(ctx, descriptor, repo_url, commit_sha)
    namespace = ctx.settings.namespace_for(environment)
    app = descriptor.name
    replicas = descriptor.chaos.replicas
    normal = descriptor.replicas.get(environment, 1)
    kube = await open_kube(ctx, namespace)
    await ctx.log(f"scaling {app} in {namespace} to {replicas} for the experiment")
    await run_blocking(kube.scale, namespace, app, replicas)
    try:
        status = await run_blocking(
            kube.wait_for_rollout, namespace, app,
            timeout_seconds=ctx.settings.rollout_timeout_seconds)
        await ctx.log(status.message)
        url = await run_blocking(service_url, kube, namespace, app)
        return await run_chaos_verification(
            ctx, descriptor, namespace=namespace,
            selector=label_selector({APP_LABEL: app, TRACK_LABEL: "stable"}),
            target_url=url, paths=descriptor.load_paths or ("/version",),
            window_seconds=window_seconds, kill_count=descriptor.chaos.kill,
            experiment=experiment, experiment_source=source)
    finally:
        await run_blocking(kube.scale, namespace, app, normal)
        await ctx.log(f"{app} in {namespace} back to {normal} replica(s)")


async def _experiment_file(ctx: StageContext, descriptor: AppDescriptor, repo_url: str,
                           commit_sha: str) -> tuple[dict[str, Any], str]:
    """The experiment ``chaos.experiment`` names, as the release's commit has it, and
    where it was read; ``InvalidChaosInput`` when it cannot be."""
    path = f"apps/{descriptor.name}/{descriptor.chaos.experiment}"
    if not repo_url or not commit_sha:
        raise StageFailure("InvalidChaosInput", f"{descriptor.name}'s app.yaml names the "
                           f"experiment {path}, but the gate was not given the release's "
                           "repository and commit to read it from")
    source = f"{redact_url(repo_url)}@{commit_sha[:12]}:{path}"
    try:
        text = await run_blocking(git_for(ctx.settings).read_file, repo_url, commit_sha, path)
        if text is None:
            raise InvalidChaosExperiment(f"{source}: missing; chaos.experiment names a file "
                                         "the commit does not have")
        return chaos_toolkit.parse_experiment(text, source=source), source
    except (GitError, InvalidChaosExperiment) as err:
        raise StageFailure("InvalidChaosInput", str(err)) from err
