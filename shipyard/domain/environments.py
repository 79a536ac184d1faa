"""What an environment runs of an app, judged from its live Deployments and Service: the
health of the recorded release (kubectl's rollout rules) and how the Service's traffic
splits between versions. Pure: the objects are plain dicts as the API server returns them.

A Service sends each connection to one of the ready pods its selector matches, so a
version's share is its ready pods among all the ready pods selected (red/black moves the
whole share at once by changing the selector's slot; a canary's analysis tracks have
Services of their own and take no share of the app's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shipyard.domain.labels import SLOT_LABEL, TRACK_LABEL, VERSION_LABEL
from shipyard.domain.rollout import deployment_rollout_status

__all__ = ["Health", "Workload", "judge_health", "traffic_shares", "workload_of"]

Health = Literal["healthy", "progressing", "failed", "missing", "unknown"]


@dataclass(frozen=True, slots=True)
class Workload:
    """One Deployment of the app: its name, version, slot and track, replicas wanted and
    ready, its rollout state, and its pods' labels (what a Service selector matches)."""

    name: str
    version: str
    slot: str
    track: str
    desired: int
    ready: int
    rolled_out: bool
    failed: bool
    message: str
    pod_labels: Mapping[str, str]


def workload_of(deployment: Mapping[str, Any]) -> Workload:
    """A :class:`Workload` from a Deployment object."""
    metadata = deployment.get("metadata", {})
    labels = ((deployment.get("spec", {}).get("template") or {}).get("metadata") or {}
              ).get("labels") or {}
    status = deployment.get("status") or {}
    rollout = deployment_rollout_status(deployment)
    return Workload(
        name=str(metadata.get("name", "")),
        version=str(labels.get(VERSION_LABEL) or metadata.get("labels", {}).get(
            VERSION_LABEL, "")),
        slot=str(labels.get(SLOT_LABEL, "")), track=str(labels.get(TRACK_LABEL, "")),
        desired=int(deployment.get("spec", {}).get("replicas", 1) or 0),
        ready=int(status.get("readyReplicas", 0) or 0), rolled_out=rollout.done,
        failed=rollout.failed, message=rollout.message, pod_labels=dict(labels))


def traffic_shares(selector: Mapping[str, str],
                   workloads: Sequence[Workload]) -> dict[str, float]:
    """Per Deployment name, the share (0 to 1) of the Service's traffic its ready pods
    get; empty when the selector matches no ready pod."""
    selected = [w for w in workloads
                if selector and all(w.pod_labels.get(k) == v for k, v in selector.items())]
    total = sum(w.ready for w in selected)
    if total == 0:
        return {}
    return {w.name: w.ready / total for w in selected if w.ready}


def judge_health(expected: str | None, workloads: Sequence[Workload]) -> tuple[Health, str]:
    """The health of the Deployment named ``expected`` (the recorded release's), with
    kubectl's words: healthy when rolled out, failed past its progress deadline,
    progressing otherwise, missing when it is not there."""
    if expected is None:
        return "missing", "nothing released here"
    for workload in workloads:
        if workload.name == expected:
            if workload.failed:
                return "failed", workload.message
            if workload.rolled_out:
                return "healthy", f"{workload.ready}/{workload.desired} ready"
            return "progressing", workload.message
    return "missing", f"deployment {expected!r} is not in the cluster"
