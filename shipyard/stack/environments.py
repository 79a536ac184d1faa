"""The bootstrap of Shipyard's environments in a cluster, with its admin identity: the
only use Shipyard makes of that identity.

``shipyard up`` (the kubernetes component, for the local cluster or the one ``KUBECONFIG``
names) applies what :class:`~shipyard.domain.environment_access.EnvironmentAccess` lists
for the settings' prefix and environments (namespaces enforcing the restricted Pod
Security Standard, one deploy ServiceAccount per environment, the read-only one, their
Roles and bindings), then writes each identity's kubeconfig under ``<home>/kube`` with a
token from the TokenRequest API. Running it again changes nothing in the cluster
(server-side apply of the same objects) and writes a kubeconfig again only when it is
missing, names another API server, no longer authenticates (its account was deleted and
made again) or has less than half of its lifetime left.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.adapters.kube_client import KubeClient, KubeError
from shipyard.adapters.kube_identity import (
    cluster_of,
    deploy_kubeconfig,
    server_of,
    token_expiry,
    viewer_kubeconfig,
    write_identity,
)
from shipyard.domain.environment_access import EnvironmentAccess
from shipyard.settings import Settings

__all__ = ["EnvironmentBootstrap", "Identity", "access_of"]


@dataclass(frozen=True, slots=True)
class Identity:
    """One identity to keep: its ServiceAccount and its kubeconfig."""

    account: str
    kubeconfig: Path


def access_of(settings: Settings) -> EnvironmentAccess:
    """The environments the settings name, and their identities."""
    return EnvironmentAccess(settings.namespace_prefix, tuple(settings.environments))


@dataclass(frozen=True)
class EnvironmentBootstrap:
    """Makes the settings' environments and identities in the cluster of
    ``admin_kubeconfig``."""

    settings: Settings
    admin_kubeconfig: Path

    @property
    def access(self) -> EnvironmentAccess:
        return access_of(self.settings)

    def identities(self) -> list[Identity]:
        """Every identity the installation keeps: one per environment, then the viewer."""
        access, home = self.access, self.settings.home
        found = [Identity(access.deployer(env),
                          deploy_kubeconfig(home, access.namespace(env)))
                 for env in access.environments]
        found.append(Identity(access.viewer,
                              viewer_kubeconfig(home, access.system_namespace)))
        return found

    def ensure(self, now: datetime | None = None) -> list[str]:
        """Apply the environments' objects and write the identities that need a new token.
        Returns the accounts whose kubeconfig was written. Raises ``KubeError``."""
        connection = KubeClient.from_kubeconfig(self.admin_kubeconfig)
        kube, admin = Kube(connection), KubeBootstrap(connection)
        access = self.access
        for manifest in access.manifests():
            kube.apply(manifest)
        cluster = cluster_of(self.admin_kubeconfig)
        lifetime = timedelta(days=self.settings.identity_token_days)
        moment = now or datetime.now(UTC)
        written = []
        for identity in self.identities():
            if self._current(identity, str(cluster["server"]), moment + lifetime / 2):
                continue
            token, _ = admin.request_token(access.system_namespace, identity.account,
                                           seconds=int(lifetime.total_seconds()))
            user = f"system:serviceaccount:{access.system_namespace}:{identity.account}"
            write_identity(identity.kubeconfig, cluster, user, token)
            written.append(identity.account)
        return written

    def missing(self, now: datetime | None = None) -> list[str]:
        """The identities with no usable kubeconfig: none, unreadable, or its token
        expired (for ``status``, which makes no API call for them)."""
        moment = now or datetime.now(UTC)
        found = []
        for identity in self.identities():
            try:
                expires = token_expiry(identity.kubeconfig)
            except KubeError:
                expires = None
            if expires is None or expires <= moment:
                found.append(identity.account)
        return found

    @staticmethod
    def _current(identity: Identity, server: str, renew_after: datetime) -> bool:
        """Whether ``identity``'s kubeconfig can stay: it exists, names ``server``, its
        token lives past ``renew_after`` and the API server still takes it."""
        path = identity.kubeconfig
        if not path.exists() or server_of(path) != server:
            return False
        expires = token_expiry(path)
        if expires is None or expires <= renew_after:
            return False
        try:
            return KubeBootstrap.from_kubeconfig(path).whoami().endswith(
                f":{identity.account}")
        except KubeError:
            return False
