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

import asyncio
import contextlib
import time
from collections.abc import Callable

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import UNAVAILABLE_NOTICES, KubeError
from shipyard.adapters.kube_identity import (
    IdentityUnavailable,
    deploy_kubeconfig,
    open_identity,
    viewer_kubeconfig,
)
from shipyard.domain.environment_access import EnvironmentAccess
from shipyard.settings import Settings
from stages.runtime import StageContext, StageFailure

__all__ = ["CLUSTER_WAIT_SECONDS", "open_kube", "open_viewer"]

CLUSTER_WAIT_SECONDS = 60.0
"""How long a stage waits for an API server that does not answer /readyz before it fails:
long enough to ride out a restart (about 20 s here), short enough to fail a stage whose
cluster is down while someone still watches."""


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
    # From here on in this stage, a call that waits for the API server says so in its log.
    UNAVAILABLE_NOTICES.set(_into_log(ctx))
    if not await _ready_within(ctx, kube, CLUSTER_WAIT_SECONDS):
        raise StageFailure("ClusterUnavailable", f"the API server of {path} did not "
                           f"answer /readyz for {CLUSTER_WAIT_SECONDS:.0f}s; start it with "
                           "`shipyard up`")
    return kube


def _into_log(ctx: StageContext) -> Callable[[str], None]:
    """A notice from a worker thread, written to the stage's log on the stage's loop."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def write(text: str) -> None:
        task = loop.create_task(ctx.log(text))
        pending.add(task)  # held until written: the loop keeps only weak references
        task.add_done_callback(pending.discard)

    def notice(text: str) -> None:
        with contextlib.suppress(RuntimeError):  # the stage's loop has closed
            loop.call_soon_threadsafe(write, text)

    return notice


async def _ready_within(ctx: StageContext, kube: Kube, seconds: float) -> bool:
    """Whether the API server answers /readyz, asked every second for up to ``seconds``;
    the stage's log says when it had to wait, and for how long."""
    started = time.monotonic()
    while not await run_blocking(kube.client.ready):
        if time.monotonic() - started >= seconds:
            return False
        if time.monotonic() - started < 1:
            await ctx.log(f"the API server did not answer /readyz; waiting up to "
                          f"{seconds:.0f}s for it")
        await asyncio.sleep(1)
    if time.monotonic() - started >= 1:
        await ctx.log(f"the API server answers again after "
                      f"{time.monotonic() - started:.0f}s")
    return True


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
