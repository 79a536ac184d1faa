"""What ``shipyard up`` does to a cluster beyond the deploy verbs: read the server's
version, create the cluster-wide objects (nodes, cluster roles) and namespaces, taint and
wait for nodes, request ServiceAccount tokens for the identities and ask who an identity
is. Tests make and remove their namespaces with it too.

Every failure is a :class:`~shipyard.adapters.kube_client.KubeError`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipyard.adapters.blocking import pause
from shipyard.adapters.kube_client import KubeClient, KubeError, UnsupportedKind, refused
from shipyard.domain.clock import Monotonic, Sleep

__all__ = ["KubeBootstrap"]

# kind -> (collection path, namespaced): what ``create`` makes.
_CREATABLE: dict[str, tuple[str, bool]] = {
    "Namespace": ("/api/v1/namespaces", False),
    "Node": ("/api/v1/nodes", False),
    "Service": ("/api/v1/namespaces/{namespace}/services", True),
    "Deployment": ("/apis/apps/v1/namespaces/{namespace}/deployments", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1/clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", False),
}


@dataclass(frozen=True)
class KubeBootstrap:
    """The cluster bootstrap over one connection (``client``), usually the admin's."""

    client: KubeClient

    @classmethod
    def from_kubeconfig(cls, path: Path) -> KubeBootstrap:
        return cls(KubeClient.from_kubeconfig(path))

    def version(self) -> str:
        """The API server's version (``v1.34.4``)."""
        status, answer = self.client.call("GET", "/version", timeout=5)
        if status != 200:
            raise refused("reading the server version", status, answer)
        return str((answer or {}).get("gitVersion"))

    def whoami(self) -> str:
        """The user name the API server takes this client for (a SelfSubjectReview, which
        every authenticated identity may make)."""
        status, answer = self.client.call(
            "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            content_type="application/json", timeout=10)
        if status not in (200, 201):
            raise refused("who am I", status, answer)
        return str(((answer or {}).get("status") or {}).get("userInfo", {}).get("username"))

    def request_token(self, namespace: str, service_account: str, *,
                      seconds: int) -> tuple[str, datetime]:
        """A new token of ServiceAccount ``namespace/service_account`` from the
        TokenRequest API, valid for ``seconds`` (or less, if the API server caps it), for
        the API server's own audience; returns it and when it expires. It stays valid until
        then unless the account is deleted."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds}}
        status, answer = self.client.call(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            body=body, content_type="application/json")
        if status not in (200, 201):
            raise refused(f"requesting a token of {namespace}/{service_account}", status,
                          answer)
        token_status = (answer or {}).get("status") or {}
        expires = datetime.fromisoformat(
            str(token_status["expirationTimestamp"]).replace("Z", "+00:00"))
        return str(token_status["token"]), expires.astimezone(UTC)

    def create(self, manifest: Mapping[str, Any]) -> None:
        """Create one object (Namespace, Node, Deployment, Service, ClusterRole,
        ClusterRoleBinding); an existing one is left as it is."""
        kind = str(manifest.get("kind"))
        if kind not in _CREATABLE:
            raise UnsupportedKind(f"create makes {', '.join(_CREATABLE)}, not {kind}")
        collection, namespaced = _CREATABLE[kind]
        if namespaced:
            namespace = manifest.get("metadata", {}).get("namespace", "default")
            collection = collection.format(namespace=namespace)
        status, answer = self.client.call("POST", collection, body=dict(manifest),
                                          content_type="application/json")
        if status not in (200, 201, 202, 409):
            raise refused(f"creating {kind} {manifest['metadata']['name']}", status, answer)

    def namespaces(self) -> dict[str, datetime | None]:
        """Every namespace's name and when it was created."""
        status, answer = self.client.call("GET", "/api/v1/namespaces")
        if status != 200:
            raise refused("listing namespaces", status, answer)
        found: dict[str, datetime | None] = {}
        for item in (answer or {}).get("items", []):
            metadata = item.get("metadata", {})
            created = metadata.get("creationTimestamp")
            found[metadata.get("name", "")] = (
                datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None)
        return found

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace and everything in it (the API finishes it in the background);
        a missing one, or one being deleted already (409), is fine."""
        status, answer = self.client.call("DELETE", f"/api/v1/namespaces/{name}")
        if status not in (200, 202, 404, 409):
            raise refused(f"deleting namespace {name}", status, answer)

    def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
        """Strategic-merge ``patch`` into node ``name`` (e.g. its taints)."""
        status, answer = self.client.call(
            "PATCH", f"/api/v1/nodes/{name}", body=dict(patch),
            content_type="application/strategic-merge-patch+json")
        if status != 200:
            raise refused(f"patching node {name}", status, answer)

    def wait_for_node_ready(self, name: str, *, timeout_seconds: float,
                            now: Monotonic = time.monotonic,
                            sleep: Sleep = pause) -> None:
        """Poll node ``name`` until its Ready condition is True (a node not registered
        yet is waited for); :class:`KubeError` after ``timeout_seconds``."""
        deadline = now() + timeout_seconds
        while True:
            status, answer = self.client.call("GET", f"/api/v1/nodes/{name}")
            if status == 200:
                conditions = ((answer or {}).get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in conditions):
                    return
            elif status != 404:
                raise refused(f"reading node {name}", status, answer)
            if now() > deadline:
                raise KubeError(f"node {name} not Ready after {timeout_seconds:.0f}s")
            sleep(0.5)
