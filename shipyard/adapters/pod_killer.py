"""Chaos Monkey's hand: list the pods a selector picks and kill them.

A kill deletes the pod with a grace period of 0: the API server removes it at once (so the
EndpointSlice drops it and the Service stops sending to it) and the kubelet stops its
containers without waiting for a drain. That is the failure the chaos gate rehearses, a node
or process dying, not a rolling update's polite shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import refused

__all__ = ["PodKiller"]


@dataclass
class PodKiller:
    kube: Kube

    def live_pods(self, namespace: str, selector: str) -> list[str]:
        """The names of the running pods ``selector`` picks that are not already being
        deleted, sorted."""
        return sorted(p["metadata"]["name"] for p in self.kube.pods(namespace, selector)
                      if _alive(p))

    def kill(self, namespace: str, name: str) -> bool:
        """Delete pod ``name`` with no grace period; ``False`` if it was already gone.
        Shipyard's one way of deleting a pod."""
        status, answer = self.kube.client.call(
            "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
            query={"gracePeriodSeconds": "0"},
            body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
            timeout=10)
        if status == 404:
            return False
        if status not in (200, 202):
            raise refused(f"killing pod {namespace}/{name}", status, answer)
        return True


def _alive(pod: dict[str, Any]) -> bool:
    return (not pod["metadata"].get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") == "Running")
