"""The labels Shipyard puts on what it deploys and selects it by again: one name per key.

The bake writes them (:func:`shipyard.domain.manifests.standard_labels`); the stages, the
environments board and the canary's tracks find the objects by them. Spelling each key
once keeps a selector from drifting away from the labels it must match.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["APP_LABEL", "MANAGED_BY", "MANAGED_BY_LABEL", "RELEASE_LABEL", "SLOT_LABEL",
           "TRACK_LABEL", "VERSION_LABEL", "label_selector"]

APP_LABEL = "app.kubernetes.io/name"
VERSION_LABEL = "app.kubernetes.io/version"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "shipyard"
"""The value of :data:`MANAGED_BY_LABEL` on everything Shipyard applies."""
TRACK_LABEL = "shipyard.dev/track"
"""``stable``, ``canary`` or ``baseline`` (:data:`shipyard.domain.manifests.TRACKS`)."""
RELEASE_LABEL = "shipyard.dev/release"
SLOT_LABEL = "shipyard.dev/slot"
"""A red/black version's slot (``v007``); absent on a bake that rolls in place."""


def label_selector(labels: Mapping[str, str]) -> str:
    """The API's label selector for objects carrying all of ``labels``
    (``key=value,key=value``)."""
    return ",".join(f"{key}={value}" for key, value in labels.items())
