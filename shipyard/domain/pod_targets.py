"""Pods as Prometheus scrape targets, labelled as Prometheus's Kubernetes discovery
(``kubernetes_sd_configs``, role ``pod``) labels them.

Debian's Prometheus is built without Kubernetes discovery, so the local stack feeds it
pods through its HTTP discovery (``http_sd_configs``) instead: a list of target groups,
each with ``targets`` and ``labels``. Giving every target the same ``__meta_kubernetes_*``
labels Kubernetes discovery would give it means one set of relabelling rules serves both:
a team's own Prometheus, which has Kubernetes discovery, takes the stack's rules unchanged.

As Kubernetes discovery does, a pod yields one target per declared container port, at
the pod's IP; a pod without an IP (not scheduled, or ended) yields none. Label names are
sanitized as Prometheus sanitizes them (every character that is not a letter, digit or
underscore becomes ``_``), with a ``labelpresent``/``annotationpresent`` companion each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["pod_targets", "sanitize"]

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_META = "__meta_kubernetes_"


def sanitize(name: str) -> str:
    """A Kubernetes label or annotation name as a Prometheus label name's suffix."""
    return _INVALID.sub("_", name)


def pod_targets(pods: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The HTTP-discovery target groups of ``pods`` (Pod objects as the API returns them),
    one group per container port of each pod that has an IP, in the pods' order."""
    groups: list[dict[str, Any]] = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        status = pod.get("status") or {}
        ip = status.get("podIP")
        if not ip:
            continue
        common = _pod_labels(metadata, status, pod.get("spec") or {})
        for container, is_init in _containers(pod.get("spec") or {}):
            for port in container.get("ports") or []:
                number = port.get("containerPort")
                if not isinstance(number, int):
                    continue
                host = f"[{ip}]" if ":" in str(ip) else str(ip)
                groups.append({"targets": [f"{host}:{number}"], "labels": {
                    **common,
                    f"{_META}pod_container_name": str(container.get("name", "")),
                    f"{_META}pod_container_image": str(container.get("image", "")),
                    f"{_META}pod_container_init": "true" if is_init else "false",
                    f"{_META}pod_container_port_name": str(port.get("name", "")),
                    f"{_META}pod_container_port_number": str(number),
                    f"{_META}pod_container_port_protocol": str(port.get("protocol", "TCP")),
                }})
    return groups


def _pod_labels(metadata: Mapping[str, Any], status: Mapping[str, Any],
                spec: Mapping[str, Any]) -> dict[str, str]:
    labels = {
        f"{_META}namespace": str(metadata.get("namespace", "")),
        f"{_META}pod_name": str(metadata.get("name", "")),
        f"{_META}pod_ip": str(status.get("podIP", "")),
        f"{_META}pod_uid": str(metadata.get("uid", "")),
        f"{_META}pod_phase": str(status.get("phase", "")),
        f"{_META}pod_ready": _ready(status),
        f"{_META}pod_node_name": str(spec.get("nodeName", "")),
        f"{_META}pod_host_ip": str(status.get("hostIP", "")),
    }
    for kind, plural in (("label", "labels"), ("annotation", "annotations")):
        for key, value in (metadata.get(plural) or {}).items():
            name = sanitize(str(key))
            labels[f"{_META}pod_{kind}_{name}"] = str(value)
            labels[f"{_META}pod_{kind}present_{name}"] = "true"
    for owner in metadata.get("ownerReferences") or []:
        if owner.get("controller"):
            labels[f"{_META}pod_controller_kind"] = str(owner.get("kind", ""))
            labels[f"{_META}pod_controller_name"] = str(owner.get("name", ""))
    return labels


def _containers(spec: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], bool]]:
    return ([(c, False) for c in spec.get("containers") or []]
            + [(c, True) for c in spec.get("initContainers") or []])


def _ready(status: Mapping[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return "true" if condition.get("status") == "True" else "false"
    return "unknown"
