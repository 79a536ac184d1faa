"""Is a Deployment rolled out? kubectl's ``rollout status`` rules, line by line, over the
Deployment as plain data (the API's JSON as a mapping).

One function serves the deploy stage's wait loop, the UI's health badges and the rollback
decision alike (see kubectl's ``DeploymentStatusViewer.Status``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RolloutStatus", "deployment_rollout_status", "scaled_and_rolled_out"]


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    done: bool
    failed: bool
    message: str


def deployment_rollout_status(deployment: Mapping[str, Any]) -> RolloutStatus:
    """The rollout's state as ``kubectl rollout status`` would report it."""
    name = deployment.get("metadata", {}).get("name", "?")
    generation = deployment.get("metadata", {}).get("generation", 0)
    spec = deployment.get("spec", {})
    status = deployment.get("status", {}) or {}
    if generation > status.get("observedGeneration", 0):
        return RolloutStatus(False, False, "Waiting for deployment spec update to be observed")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and (
                condition.get("reason") == "ProgressDeadlineExceeded"):
            return RolloutStatus(False, True,
                                 f"deployment {name!r} exceeded its progress deadline")
    desired = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    replicas = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if desired is not None and updated < desired:
        return RolloutStatus(False, False, f"Waiting for deployment {name!r} rollout to "
                             f"finish: {updated} out of {desired} new replicas have been "
                             "updated")
    if replicas > updated:
        return RolloutStatus(False, False, f"Waiting for deployment {name!r} rollout to "
                             f"finish: {replicas - updated} old replicas are pending "
                             "termination")
    if available < updated:
        return RolloutStatus(False, False, f"Waiting for deployment {name!r} rollout to "
                             f"finish: {available} of {updated} updated replicas are "
                             "available")
    return RolloutStatus(True, False, f"deployment {name!r} successfully rolled out")


def scaled_and_rolled_out(deployment: Mapping[str, Any]) -> bool:
    """Whether a Deployment asks for replicas and has them all, by kubectl's rules: a
    version still warm, which can take traffic back at once."""
    wanted = deployment.get("spec", {}).get("replicas", 0)
    return bool(wanted) and deployment_rollout_status(deployment).done
