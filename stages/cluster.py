"""Opening the cluster the cd stages deploy to."""

from __future__ import annotations

import asyncio

from shipyard.adapters.kube import Kube, KubeError
from stages.runtime import StageContext, StageFailure

__all__ = ["open_kube"]


async def open_kube(ctx: StageContext) -> Kube:
    """The cluster of the settings' kubeconfig, or a ``ClusterUnavailable`` failure that
    names the kubeconfig."""
    path = ctx.settings.kubeconfig_file
    try:
        kube = await asyncio.to_thread(Kube.from_kubeconfig, path)
    except KubeError as err:
        raise StageFailure("ClusterUnavailable", str(err)) from err
    if not await asyncio.to_thread(kube.ready):
        raise StageFailure("ClusterUnavailable", f"the API server of {path} does not "
                           "answer /readyz; start it with `shipyard up` or set "
                           "SHIPYARD_KUBECONFIG")
    return kube
