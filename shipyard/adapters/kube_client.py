"""The one way Shipyard talks to a Kubernetes API server: REST calls through the official
client's connection (its kubeconfig loading, TLS and token handling), answers as plain
JSON mappings, and every failure as a :class:`KubeError`.

Every call has a deadline (``_request_timeout``: :data:`REQUEST_TIMEOUT_SECONDS` unless the
caller says) and makes none once the work calling it was abandoned (a stage that timed out,
see :mod:`shipyard.adapters.blocking`): what a stage does to the cluster stops with it.

The jobs built on it each have a module of their own: the deploy verbs the stages use
(:mod:`shipyard.adapters.kube`), the cluster bootstrap of ``shipyard up``
(:mod:`shipyard.adapters.kube_bootstrap`) and the chaos gate's pod kills
(:mod:`shipyard.adapters.pod_killer`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3 import Retry
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as RequestTimedOut

from shipyard.adapters.blocking import check_abandoned
from shipyard.domain.environment_access import DEPLOYABLE_KINDS

__all__ = ["REQUEST_TIMEOUT_SECONDS", "KubeClient", "KubeError", "UnsupportedKind",
           "object_path", "refused"]

UNAVAILABLE_PAUSES = (1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0)
"""Seconds between tries of a call the API server could not take (see
:meth:`KubeClient.call`)."""
UNAVAILABLE_NOTICES: ContextVar[Callable[[str], None] | None] = ContextVar(
    "kube_unavailable_notices", default=None)
"""Who hears that a call waits for an API server that does not answer, and that it
answers again (a stage sets it to write into its log: :func:`stages.cluster.open_kube`).
Called from the thread making the call."""
REQUEST_TIMEOUT_SECONDS = 30.0
"""How long one API call may take, connection and answer (a watch has its own)."""
# One more try for a connection that broke (a keep-alive connection the server had closed),
# none for a slow answer: it had its deadline, and a second would double it.
_RETRIES = Retry(total=1, read=False, redirect=0)


def _prefix(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


# (apiVersion, kind) -> (URL prefix, plural, namespaced): the kinds ``object_path`` names.
# The kinds an app's templates may render (the domain's list: bake refuses the others),
# plus what the bootstrap applies with the admin identity (namespaces and the identities'
# accounts, Roles and bindings).
_RESOURCES: dict[tuple[str, str], tuple[str, str, bool]] = {
    **{key: (_prefix(key[0]), plural, True)
       for key, (_, plural) in DEPLOYABLE_KINDS.items()},
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("rbac.authorization.k8s.io/v1", "Role"):
        ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"):
        ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    # The local stack's Prometheus reads pods in every namespace (shipyard.stack.prometheus).
    ("rbac.authorization.k8s.io/v1", "ClusterRole"):
        ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"):
        ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
}


class KubeError(RuntimeError):
    """The API server refused or could not be reached; the message says which call, and
    ``status`` the HTTP status of a refusal (0 when there was no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class KubeUnreachable(KubeError):
    """No answer came from the API server: the connection was refused or broke. Every
    verb Shipyard sends may be repeated (applies are server-side, creations tolerate
    their object existing)."""


class UnsupportedKind(KubeError):
    """An object of a kind Shipyard does not apply."""


def refused(what: str, status: int, answer: Any) -> KubeError:
    """The error for an API server that answered ``what`` with ``status``, carrying the
    server's reason (a Status object's message)."""
    if isinstance(answer, Mapping):
        reason = str(answer.get("message") or answer.get("reason") or answer)
    else:
        reason = str(answer)
    return KubeError(f"{what}: {status} {reason}", status)


def object_path(manifest: Mapping[str, Any], *, named: bool = True) -> str:
    """The REST path of ``manifest``'s object (or, not ``named``, of its collection).
    Raises :class:`UnsupportedKind` for a kind Shipyard does not apply."""
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


@dataclass(frozen=True)
class KubeClient:
    """A connection to one API server as one identity (a kubeconfig's)."""

    api: client.ApiClient

    @classmethod
    def from_kubeconfig(cls, path: Path) -> KubeClient:
        configuration = client.Configuration()
        try:
            config.load_kube_config(config_file=str(path),
                                    client_configuration=configuration)
        except (config.ConfigException, OSError) as err:
            raise KubeError(f"cannot use kubeconfig {path}: {err}") from err
        configuration.retries = _RETRIES
        return cls(client.ApiClient(configuration))

    def call(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
             body: Any = None, content_type: str | None = None,
             timeout: float = REQUEST_TIMEOUT_SECONDS) -> tuple[int, Any]:
        """One REST call; returns the status and the decoded JSON answer (or None). A
        refusal is an answer, not an error: the caller decides which statuses are fine.
        Raises :class:`KubeError` only when no answer came within ``timeout``, and
        :class:`~shipyard.adapters.blocking.Abandoned` (sending nothing) once the work
        calling it was abandoned.

        An API server that refuses connections, or answers 503 or 429, is restarting or
        overloaded and did nothing: the call is tried again after each of
        :data:`UNAVAILABLE_PAUSES` (about 40 s in all, which rides out a restart: one
        took 22 s here)."""
        notice = UNAVAILABLE_NOTICES.get()
        unanswered_since: float | None = None
        for pause in (*UNAVAILABLE_PAUSES, None):
            try:
                status, answer = self._call_once(method, path, query=query, body=body,
                                                 content_type=content_type, timeout=timeout)
            except KubeUnreachable as err:
                if pause is None:
                    raise
                problem = str(err)
            else:
                if status not in (429, 503) or pause is None:
                    if unanswered_since is not None and notice is not None:
                        notice(f"the API server answers again after "
                               f"{time.monotonic() - unanswered_since:.0f}s")
                    return status, answer
                problem = f"{method} {path}: {status}"
            if unanswered_since is None:
                unanswered_since = time.monotonic()
                if notice is not None:
                    notice(f"the API server did not answer ({problem}); trying again for "
                           f"up to {sum(UNAVAILABLE_PAUSES):.0f}s")
            time.sleep(pause)
        raise AssertionError("unreachable")  # the last pass returns or raises

    def _call_once(self, method: str, path: str, *, query: Mapping[str, str] | None,
                   body: Any, content_type: str | None,
                   timeout: float) -> tuple[int, Any]:
        check_abandoned()
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
            if _timed_out(err):
                raise _silent(method, path, timeout) from err
            raise KubeUnreachable(f"{method} {path}: {err}") from err
        return response.status, _decoded(response.data)

    def text(self, path: str, *, timeout: float = 5) -> str:
        """GET ``path`` as text (``/readyz``, a proxied answer); any status but 200, or
        no answer within ``timeout``, is a :class:`KubeError`."""
        check_abandoned()
        try:
            method, url, headers, _, _ = self.api.param_serialize(
                "GET", path, auth_settings=["BearerToken"])
            response = self.api.call_api(method, url, header_params=headers,
                                         _request_timeout=timeout)
            response.read()
        except (ApiException, HTTPError, OSError) as err:
            if _timed_out(err):
                raise _silent("GET", path, timeout) from err
            raise KubeError(f"GET {path}: {err}") from err
        if response.status != 200:
            raise KubeError(f"GET {path}: {response.status}", response.status)
        return bytes(response.data or b"").decode()

    def ready(self) -> bool:
        """Whether the API server answers ``/readyz`` with ok."""
        try:
            return self.text("/readyz").strip() == "ok"
        except KubeError:
            return False


def _timed_out(err: Exception) -> bool:
    reason = err.reason if isinstance(err, MaxRetryError) else err
    # urllib3 makes a refused connection a kind of connect timeout; it is not one.
    return isinstance(reason, RequestTimedOut | TimeoutError) and \
        not isinstance(reason, NewConnectionError)


def _silent(method: str, path: str, timeout: float) -> KubeError:
    return KubeError(f"{method} {path}: the API server did not answer within {timeout:g} s; "
                     "`shipyard status` shows whether the cluster is up")


def _decoded(data: Any) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except (ValueError, TypeError):
        return {"message": bytes(data).decode(errors="replace")[:500]
                if isinstance(data, bytes | bytearray) else str(data)[:500]}
