"""Opening the cluster the cd stages deploy to, as the deploy identity of one environment.

Every stage that touches the cluster does it as the ServiceAccount ``shipyard up`` made for
the environment's namespace (see :mod:`shipyard.domain.environment_access`): it may apply,
read, scale and delete the app kinds there and nothing anywhere else. A missing or expired
identity fails the stage saying to run ``shipyard up``; the admin kubeconfig is never a
fallback.
"""

from __future__ import annotations

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_identity import IdentityUnavailable, deploy_kubeconfig, open_identity
from stages.runtime import StageContext, StageFailure

__all__ = ["open_kube"]


async def open_kube(ctx: StageContext, namespace: str) -> Kube:
    """The cluster as the deploy identity of the environment whose namespace is
    ``namespace``; a ``NoDeployIdentity`` failure when it is not set up or has expired, a
    ``ClusterUnavailable`` one when the API server does not answer."""
    path = deploy_kubeconfig(ctx.settings.home, namespace)
    try:
        kube = await run_blocking(open_identity, path,
                                  what=f"the deploy identity of namespace {namespace}")
    except IdentityUnavailable as err:
        raise StageFailure("NoDeployIdentity", str(err)) from err
    if not await run_blocking(kube.client.ready):
        raise StageFailure("ClusterUnavailable", f"the API server of {path} does not "
                           "answer /readyz; start it with `shipyard up`")
    return kube
