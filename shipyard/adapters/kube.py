"""Talking to a Kubernetes API server with the official client.

Objects come back as plain mappings (the API's JSON), so ``shipyard.domain`` can judge them
without knowing the client's model classes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from shipyard.domain.rollout import RolloutStatus, deployment_rollout_status

__all__ = ["Kube", "KubeError"]


class KubeError(RuntimeError):
    """The API server refused or could not be reached; the message says which call."""


@dataclass
class Kube:
    api: client.ApiClient

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Kube:
        try:
            return cls(config.new_client_from_config(config_file=str(path)))
        except (config.ConfigException, OSError) as err:
            raise KubeError(f"cannot use kubeconfig {path}: {err}") from err

    def _raw(self, path: str) -> str:
        try:
            method, url, headers, _, _ = self.api.param_serialize(
                "GET", path, auth_settings=["BearerToken"])
            response = self.api.call_api(method, url, header_params=headers,
                                         _request_timeout=5)
            response.read()
        except (ApiException, HTTPError, OSError) as err:
            raise KubeError(f"GET {path}: {err}") from err
        if response.status != 200:
            raise KubeError(f"GET {path}: {response.status}")
        return bytes(response.data or b"").decode()

    def ready(self) -> bool:
        """Whether the API server answers ``/readyz`` with ok."""
        try:
            return self._raw("/readyz").strip() == "ok"
        except KubeError:
            return False

    def version(self) -> str:
        try:
            return str(client.VersionApi(self.api).get_code(_request_timeout=5).git_version)
        except (ApiException, HTTPError, OSError) as err:
            raise KubeError(f"reading the server version: {err}") from err

    def _json(self, obj: Any) -> dict[str, Any]:
        return dict(self.api.sanitize_for_serialization(obj))

    def create(self, manifest: Mapping[str, Any]) -> None:
        """Create one object (Namespace, Node, Deployment, Service); an existing one is
        left as it is."""
        kind = manifest["kind"]
        body: Any = dict(manifest)
        namespace = manifest.get("metadata", {}).get("namespace", "default")
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        calls = {
            "Namespace": lambda: core.create_namespace(body),
            "Node": lambda: core.create_node(body),
            "Service": lambda: core.create_namespaced_service(namespace, body),
            "Deployment": lambda: apps.create_namespaced_deployment(namespace, body),
        }
        try:
            calls[kind]()
        except ApiException as err:
            if err.status != 409:
                raise KubeError(f"creating {kind} {manifest['metadata']['name']}: "
                                f"{err.status} {err.reason}: {err.body}") from err

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace and everything in it (the API finishes it in the background);
        a missing one is fine."""
        try:
            client.CoreV1Api(self.api).delete_namespace(name)
        except ApiException as err:
            if err.status != 404:
                raise KubeError(f"deleting namespace {name}: {err.reason}") from err

    def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
        """Strategic-merge ``patch`` into node ``name`` (e.g. its taints)."""
        body: Any = dict(patch)
        try:
            client.CoreV1Api(self.api).patch_node(name, body)
        except ApiException as err:
            raise KubeError(f"patching node {name}: {err.reason}") from err

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self._json(client.AppsV1Api(self.api).read_namespaced_deployment(
                name, namespace))
        except ApiException as err:
            raise KubeError(f"reading deployment {namespace}/{name}: {err.reason}") from err

    def wait_for_rollout(self, namespace: str, name: str, *,
                         timeout_seconds: float) -> RolloutStatus:
        """Poll the Deployment until kubectl's rules call it rolled out (or failed)."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            status = deployment_rollout_status(self.deployment(namespace, name))
            if status.done or status.failed:
                return status
            if time.monotonic() > deadline:
                raise KubeError(f"{namespace}/{name} not rolled out after "
                                f"{timeout_seconds:.0f}s: {status.message}")
            time.sleep(0.5)

    def wait_for_node_ready(self, name: str, *, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                node = client.CoreV1Api(self.api).read_node(name)
                conditions = (node.status.conditions or []) if node.status else []
                if any(c.type == "Ready" and c.status == "True" for c in conditions):
                    return
            except ApiException as err:
                if err.status != 404:
                    raise KubeError(f"reading node {name}: {err.reason}") from err
            if time.monotonic() > deadline:
                raise KubeError(f"node {name} not Ready after {timeout_seconds:.0f}s")
            time.sleep(0.5)

    def service(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self._json(client.CoreV1Api(self.api).read_namespaced_service(name,
                                                                                  namespace))
        except ApiException as err:
            raise KubeError(f"reading service {namespace}/{name}: {err.reason}") from err

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        found = client.CoreV1Api(self.api).list_namespaced_pod(namespace,
                                                               label_selector=selector)
        return [self._json(p) for p in found.items]

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            client.CoreV1Api(self.api).delete_namespaced_pod(name, namespace)
        except ApiException as err:
            raise KubeError(f"deleting pod {namespace}/{name}: {err.reason}") from err

    def service_proxy_get(self, namespace: str, service: str, path: str) -> str:
        """GET ``path`` from a Service through the API server's proxy."""
        try:
            return str(client.CoreV1Api(self.api)
                       .connect_get_namespaced_service_proxy_with_path(
                           service, namespace, path.lstrip("/"), _request_timeout=10))
        except (ApiException, HTTPError) as err:
            raise KubeError(f"GET {path} from service {namespace}/{service}: {err}") from err
