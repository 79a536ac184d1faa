"""Opening the cluster the cd stages deploy to, as the deploy identity of one environment,
and the cluster as the installation's read-only identity (what the environments board and
the drift reconciler read).

Every stage that touches the cluster does it as the ServiceAccount ``shipyard up`` made for
the environment's namespace (see :mod:`shipyard.domain.environment_access`): it may apply,
read, scale and delete the app kinds there and nothing anywhere else. A missing or expired
identity fails the stage saying to run ``shipyard up``; the admin kubeconfig is never a
fallback.
"""

from __future__ import annotations

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import KubeError
from shipyard.adapters.kube_identity import (
    IdentityUnavailable,
    deploy_kubeconfig,
    open_identity,
    viewer_kubeconfig,
)
from shipyard.domain.environment_access import EnvironmentAccess
from shipyard.settings import Settings
from stages.runtime import StageContext, StageFailure

__all__ = ["open_kube", "open_viewer"]


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


def open_viewer(settings: Settings) -> tuple[Kube | None, str]:
    """The cluster as the installation's read-only identity (never the admin's), or None
    and why it cannot be read."""
    access = EnvironmentAccess(settings.namespace_prefix, tuple(settings.environments))
    path = viewer_kubeconfig(settings.home, access.system_namespace)
    if not path.exists():
        return None, (f"no kubeconfig at {path}: the read-only identity is not set up; "
                      "`shipyard up` makes it")
    try:
        kube = open_identity(path, what="the read-only identity")
        if not kube.client.ready():
            return None, f"the API server of {path} does not answer /readyz"
    except KubeError as err:
        return None, str(err)
    return kube, ""
