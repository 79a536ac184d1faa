"""The chaos gate of a delivery: the app's chaos experiment on the new version in the
environment the pipeline names (the one before production, staging by default), scaled
for the experiment to the replicas its descriptor asks for (``chaos.replicas``) and back
afterwards, whatever the verdict."""

from __future__ import annotations

from shipyard.adapters.blocking import run_blocking
from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.labels import APP_LABEL, TRACK_LABEL, label_selector
from stages.chaos import CHAOS_TIMEOUT_SECONDS, ChaosResult, run_chaos_verification
from stages.cluster import open_kube
from stages.rollouts import service_url
from stages.runtime import StageContext, stage

__all__ = ["chaos_gate"]


# A verdict is never reused: a restart experiments again.
@stage("chaos", timeout_seconds=CHAOS_TIMEOUT_SECONDS + 300, reusable=False)
async def chaos_gate(ctx: StageContext, descriptor: AppDescriptor, environment: str,
                     window_seconds: float) -> ChaosResult:
    """Scale ``descriptor``'s app in ``environment`` to ``chaos.replicas``, run its chaos
    experiment (``chaos.kill`` pods killed under load), and scale it back."""
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
            window_seconds=window_seconds, kill_count=descriptor.chaos.kill)
    finally:
        await run_blocking(kube.scale, namespace, app, normal)
        await ctx.log(f"{app} in {namespace} back to {normal} replica(s)")
