"""Chaos Monkey's hand: list the pods a selector picks and kill them.

A kill deletes the pod with a grace period of 0: the API server removes it at once (so the
EndpointSlice drops it and the Service stops sending to it) and the kubelet stops its
containers without waiting for a drain. That is the failure the chaos gate rehearses, a node
or process dying, not a rolling update's polite shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from shipyard.adapters.kube import Kube, KubeError

__all__ = ["PodKiller"]


@dataclass
class PodKiller:
    kube: Kube

    def live_pods(self, namespace: str, selector: str) -> list[str]:
        """The names of the running pods ``selector`` picks that are not already being
        deleted, sorted."""
        try:
            pods = self.kube.pods(namespace, selector)
        except (ApiException, HTTPError, OSError) as err:
            raise KubeError(f"listing pods {selector!r} in {namespace}: {err}") from err
        return sorted(p["metadata"]["name"] for p in pods if _alive(p))

    def kill(self, namespace: str, name: str) -> bool:
        """Delete pod ``name`` with no grace period; ``False`` if it was already gone."""
        try:
            client.CoreV1Api(self.kube.api).delete_namespaced_pod(
                name, namespace, grace_period_seconds=0,
                body=client.V1DeleteOptions(grace_period_seconds=0), _request_timeout=10)
        except ApiException as err:
            if err.status == 404:
                return False
            raise KubeError(f"killing pod {namespace}/{name}: {err.status} {err.reason}") \
                from err
        except (HTTPError, OSError) as err:
            raise KubeError(f"killing pod {namespace}/{name}: {err}") from err
        return True


def _alive(pod: dict[str, Any]) -> bool:
    return (not pod["metadata"].get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") == "Running")
