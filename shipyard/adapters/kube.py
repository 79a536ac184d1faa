"""Talking to a Kubernetes API server with the official client.

Objects come back as plain mappings (the API's JSON), so ``shipyard.domain`` can judge them
without knowing the client's model classes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from shipyard.domain.environment_access import DEPLOYABLE_KINDS
from shipyard.domain.pod_health import PodProblem, pod_problems
from shipyard.domain.rollout import RolloutStatus, deployment_rollout_status

__all__ = ["FIELD_MANAGER", "Kube", "KubeError", "UnsupportedKind"]

FIELD_MANAGER = "shipyard"
"""The field manager of every server-side apply: Shipyard owns what it applies."""
SCALER = "shipyard-scaler"
"""Scaling goes through its own manager, so the next apply of a record takes replicas back."""


def _prefix(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


# (apiVersion, kind) -> (URL prefix, plural, namespaced): what ``apply``, ``get``,
# ``list_objects`` and ``delete`` handle. The kinds an app's templates may render (the
# domain's list: bake refuses the others), plus what the bootstrap applies with the admin
# identity (namespaces and the identities' accounts, Roles and bindings).
_RESOURCES: dict[tuple[str, str], tuple[str, str, bool]] = {
    **{key: (_prefix(key[0]), plural, True)
       for key, (_, plural) in DEPLOYABLE_KINDS.items()},
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("rbac.authorization.k8s.io/v1", "Role"):
        ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"):
        ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
}


class KubeError(RuntimeError):
    """The API server refused or could not be reached; the message says which call."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class UnsupportedKind(KubeError):
    """An object of a kind Shipyard does not apply."""


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

    def _call(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
              body: Any = None, content_type: str | None = None,
              timeout: float = 30) -> tuple[int, Any]:
        """One REST call; returns the status and the decoded JSON answer (or None)."""
        url_path = f"{path}?{urlencode(query)}" if query else path
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            method, url, headers, body, _ = self.api.param_serialize(
                method, url_path, header_params=headers, body=body,
                auth_settings=["BearerToken"])
            response = self.api.call_api(method, url, header_params=headers, body=body,
                                         _request_timeout=timeout)
            response.read()
        except ApiException as err:
            return err.status or 0, _decoded(err.body)
        except (HTTPError, OSError) as err:
            raise KubeError(f"{method} {path}: {err}") from err
        return response.status, _decoded(response.data)

    @staticmethod
    def object_path(manifest: Mapping[str, Any], *, named: bool = True) -> str:
        """The REST path of ``manifest``'s object (or of its collection)."""
        key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
        if key not in _RESOURCES:
            known = ", ".join(f"{k} ({v})" for v, k in sorted(_RESOURCES))
            raise UnsupportedKind(f"{key[1]} ({key[0]}) is not a kind Shipyard applies; "
                                  f"use one of: {known}")
        prefix, plural, namespaced = _RESOURCES[key]
        metadata = manifest.get("metadata") or {}
        path = prefix
        if namespaced:
            path += f"/namespaces/{metadata.get('namespace') or 'default'}"
        path += f"/{plural}"
        return f"{path}/{metadata['name']}" if named else path

    def apply(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply ``manifest`` as field manager ``shipyard``, taking over fields
        another manager set (controllers own what they apply; see the reference's SSA notes).
        With ``dry_run`` the API server validates and admits it but stores nothing.
        Returns the object as the server has (or would have) it."""
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        status, answer = self._call("PATCH", self.object_path(manifest), query=query,
                                    body=dict(manifest),
                                    content_type="application/apply-patch+yaml")
        if status not in (200, 201):
            what = f"{manifest.get('kind')} {manifest.get('metadata', {}).get('name')}"
            verb = "validating" if dry_run else "applying"
            raise KubeError(f"{verb} {what}: {status} {_message(answer)}", status)
        return dict(answer or {})

    def get(self, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
        """The live object ``manifest`` names, or None if there is none."""
        status, answer = self._call("GET", self.object_path(manifest))
        if status == 404:
            return None
        if status != 200:
            raise KubeError(f"reading {manifest.get('kind')} "
                            f"{manifest['metadata']['name']}: {status} {_message(answer)}",
                            status)
        return dict(answer)

    def list_objects(self, api_version: str, kind: str, namespace: str,
                     selector: str) -> list[dict[str, Any]]:
        """Objects of one kind in ``namespace`` matching the label ``selector``."""
        probe = {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace}}
        status, answer = self._call("GET", self.object_path(probe, named=False),
                                    query={"labelSelector": selector})
        if status == 404:
            return []
        if status != 200:
            raise KubeError(f"listing {kind} in {namespace}: {status} {_message(answer)}",
                            status)
        return [dict(item, apiVersion=api_version, kind=kind)
                for item in (answer or {}).get("items", [])]

    def delete(self, manifest: Mapping[str, Any]) -> bool:
        """Delete the object ``manifest`` names, its dependents in the background; False if
        it was already gone."""
        status, answer = self._call("DELETE", self.object_path(manifest),
                                    body={"propagationPolicy": "Background"})
        if status == 404:
            return False
        if status not in (200, 202):
            raise KubeError(f"deleting {manifest.get('kind')} "
                            f"{manifest['metadata']['name']}: {status} {_message(answer)}",
                            status)
        return True

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set a Deployment's replicas through its scale subresource (as ``SCALER``)."""
        status, answer = self._call(
            "PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            query={"fieldManager": SCALER}, body={"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json")
        if status != 200:
            raise KubeError(f"scaling deployment {namespace}/{name} to {replicas}: "
                            f"{status} {_message(answer)}", status)

    def events(self, namespace: str, involved_name: str) -> list[dict[str, Any]]:
        """Events about the object named ``involved_name`` in ``namespace``, oldest first."""
        status, answer = self._call(
            "GET", f"/api/v1/namespaces/{namespace}/events",
            query={"fieldSelector": f"involvedObject.name={involved_name}"})
        if status != 200:
            return []
        items = (answer or {}).get("items", [])
        return sorted(items, key=lambda e: str(e.get("lastTimestamp") or
                                               e.get("eventTime") or ""))

    def request_token(self, namespace: str, service_account: str, *,
                      seconds: int) -> tuple[str, datetime]:
        """A new token of ServiceAccount ``namespace/service_account`` from the
        TokenRequest API, valid for ``seconds`` (or less, if the API server caps it), for
        the API server's own audience; returns it and when it expires. It stays valid until
        then unless the account is deleted."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds}}
        status, answer = self._call(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            body=body, content_type="application/json")
        if status not in (200, 201):
            raise KubeError(f"requesting a token of {namespace}/{service_account}: {status} "
                            f"{_message(answer)}", status)
        token_status = (answer or {}).get("status") or {}
        expires = datetime.fromisoformat(
            str(token_status["expirationTimestamp"]).replace("Z", "+00:00"))
        return str(token_status["token"]), expires.astimezone(UTC)

    def whoami(self) -> str:
        """The user name the API server takes this client for (a SelfSubjectReview, which
        every authenticated identity may make)."""
        status, answer = self._call(
            "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            content_type="application/json", timeout=10)
        if status not in (200, 201):
            raise KubeError(f"who am I: {status} {_message(answer)}", status)
        return str(((answer or {}).get("status") or {}).get("userInfo", {}).get("username"))

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
        """Create one object (Namespace, Node, Deployment, Service, ClusterRole,
        ClusterRoleBinding); an existing one is left as it is."""
        kind = manifest["kind"]
        body: Any = dict(manifest)
        namespace = manifest.get("metadata", {}).get("namespace", "default")
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        rbac = client.RbacAuthorizationV1Api(self.api)
        calls = {
            "Namespace": lambda: core.create_namespace(body),
            "Node": lambda: core.create_node(body),
            "Service": lambda: core.create_namespaced_service(namespace, body),
            "Deployment": lambda: apps.create_namespaced_deployment(namespace, body),
            "ClusterRole": lambda: rbac.create_cluster_role(body),
            "ClusterRoleBinding": lambda: rbac.create_cluster_role_binding(body),
        }
        try:
            calls[kind]()
        except ApiException as err:
            if err.status != 409:
                raise KubeError(f"creating {kind} {manifest['metadata']['name']}: "
                                f"{err.status} {err.reason}: {err.body}") from err

    def namespaces(self) -> dict[str, datetime | None]:
        """Every namespace's name and when it was created."""
        status, answer = self._call("GET", "/api/v1/namespaces")
        if status != 200:
            raise KubeError(f"listing namespaces: {status} {_message(answer)}", status)
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
        try:
            client.CoreV1Api(self.api).delete_namespace(name)
        except ApiException as err:
            if err.status not in (404, 409):
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

    def follow_rollout(self, namespace: str, name: str, *, timeout_seconds: float,
                       on_change: Callable[[str], None] = lambda line: None,
                       poll_seconds: float = 0.5) -> tuple[RolloutStatus, list[PodProblem]]:
        """Wait for Deployment ``name`` as ``kubectl rollout status`` does, reporting each
        new status message and pod problem through ``on_change``. Returns the final status
        and the pods' problems; stops early when a problem cannot heal by itself (a missing
        image, a crash loop) and returns a failed status naming it."""
        deadline = time.monotonic() + timeout_seconds
        said: set[str] = set()

        def say(line: str) -> None:
            if line not in said:
                said.add(line)
                on_change(line)

        while True:
            deployment = self.deployment(namespace, name)
            status = deployment_rollout_status(deployment)
            say(status.message)
            problems: list[PodProblem] = []
            if not status.done:
                problems = self.pod_problems(namespace, deployment)
                for problem in problems:
                    say(f"  {problem}")
            if status.done or status.failed:
                return status, problems
            fatal = [p for p in problems if p.fatal]
            if fatal:
                return RolloutStatus(False, True, f"deployment {name!r} cannot become "
                                     f"available: {fatal[0]}"), problems
            if time.monotonic() > deadline:
                return RolloutStatus(False, True, f"deployment {name!r} not rolled out after "
                                     f"{timeout_seconds:.0f}s: {status.message}"), problems
            time.sleep(poll_seconds)

    def pod_problems(self, namespace: str, deployment: Mapping[str, Any]) -> list[PodProblem]:
        """The problems of a Deployment's pods, their Warning events included."""
        match = (deployment.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        pods = self.pods(namespace, selector)
        events = {p["metadata"]["name"]: self.events(namespace, p["metadata"]["name"])
                  for p in pods if not _pod_ready(p)}
        return pod_problems(pods, events)

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

    def pod_delete_now(self, namespace: str, name: str) -> None:
        """Kill a pod: deleted with no grace period, as a crash would end it."""
        try:
            client.CoreV1Api(self.api).delete_namespaced_pod(name, namespace,
                                                             grace_period_seconds=0)
        except ApiException as err:
            if err.status != 404:
                raise KubeError(f"deleting pod {namespace}/{name}: {err.reason}") from err

    def service_proxy_get(self, namespace: str, service: str, path: str) -> str:
        """GET ``path`` from a Service through the API server's proxy."""
        try:
            return str(client.CoreV1Api(self.api)
                       .connect_get_namespaced_service_proxy_with_path(
                           service, namespace, path.lstrip("/"), _request_timeout=10))
        except (ApiException, HTTPError) as err:
            raise KubeError(f"GET {path} from service {namespace}/{service}: {err}") from err


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _decoded(data: Any) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except (ValueError, TypeError):
        return {"message": bytes(data).decode(errors="replace")[:500]
                if isinstance(data, bytes | bytearray) else str(data)[:500]}


def _message(answer: Any) -> str:
    """The API server's reason for a refusal (a Status object's message)."""
    if isinstance(answer, Mapping):
        return str(answer.get("message") or answer.get("reason") or answer)
    return str(answer)
