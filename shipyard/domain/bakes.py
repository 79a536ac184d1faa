"""What a deploy does with baked objects, as pure functions over the API's JSON.

A bake (see :mod:`shipyard.domain.manifests`) is a list of objects. Deploying it is two
steps: the workloads first (ConfigMaps, Deployments, ...), then, once they are healthy, the
Services — for a versioned (red/black) bake the Services select only the new version's
pods, so applying them *is* the traffic switch, and re-applying an earlier record's
Services is the instant rollback. Canary and baseline pods are the stable bake of a
version re-labelled for their track, so the baseline is exactly what production runs.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shipyard.domain.labels import SLOT_LABEL, TRACK_LABEL
from shipyard.domain.manifests import SLOT, TRACKS

__all__ = ["derive_track", "manifest_digest", "next_slot", "object_names", "slot_number",
           "split_for_switch"]

_SWITCH_KINDS = frozenset({"Service"})


def manifest_digest(stream: str) -> str:
    """The bake's identity: sha256 of its exact bytes (equal inputs bake equal bytes)."""
    return "sha256:" + hashlib.sha256(stream.encode()).hexdigest()


def object_names(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """``Kind/name`` of each object, for logs and the stored bake."""
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objects]


def split_for_switch(objects: Sequence[Mapping[str, Any]]
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The workloads to apply and wait for, and the Services that move traffic to them."""
    workloads = [dict(o) for o in objects if o.get("kind") not in _SWITCH_KINDS]
    services = [dict(o) for o in objects if o.get("kind") in _SWITCH_KINDS]
    return workloads, services


def slot_number(slot: str) -> int:
    """``v007`` -> 7; anything that is not a slot -> -1."""
    return int(slot[1:]) if SLOT.fullmatch(slot) else -1


def next_slot(existing: Iterable[str]) -> str:
    """The slot after every one in ``existing`` (recorded or still in the cluster), from
    ``v001``; numbers are never reused, so a name always means one bake."""
    highest = max((slot_number(s) for s in existing), default=0)
    return f"v{max(highest, 0) + 1:03d}"


def derive_track(objects: Sequence[Mapping[str, Any]], *, app: str, track: str,
                 replicas: int) -> list[dict[str, Any]]:
    """The workloads of a stable bake re-made for ``track`` (canary or baseline): named
    ``<app>-<track>`` (ConfigMaps ``<app>-<track>-<suffix>``), labelled with the track and
    without the slot, with ``replicas`` pods. Services are left out: track pods take load
    through Services of their own, never the app's."""
    if track not in TRACKS or track == "stable":
        raise ValueError(f"track {track!r} must be canary or baseline")
    workloads, _ = split_for_switch(objects)
    renames = {o["metadata"]["name"]: _renamed(o["metadata"]["name"], app, track)
               for o in workloads if o["kind"] == "ConfigMap"}
    derived = []
    for original in workloads:
        obj = copy.deepcopy(original)
        obj["metadata"]["name"] = (f"{app}-{track}" if obj["kind"] == "Deployment"
                                   else renames.get(obj["metadata"]["name"],
                                                    obj["metadata"]["name"]))
        _relabel(obj["metadata"].setdefault("labels", {}), track)
        if obj["kind"] == "Deployment":
            spec = obj["spec"]
            spec["replicas"] = replicas
            _relabel(spec["selector"]["matchLabels"], track)
            _relabel(spec["template"]["metadata"].setdefault("labels", {}), track)
            _rename_config_refs(spec["template"]["spec"], renames)
        derived.append(obj)
    return derived


def _renamed(name: str, app: str, track: str) -> str:
    match = re.fullmatch(rf"{re.escape(app)}(-v\d+)?-(?P<suffix>.+)", name)
    return f"{app}-{track}-{match['suffix']}" if match else f"{name}-{track}"


def _relabel(labels: dict[str, Any], track: str) -> None:
    labels[TRACK_LABEL] = track
    labels.pop(SLOT_LABEL, None)


def _rename_config_refs(pod_spec: dict[str, Any], renames: Mapping[str, str]) -> None:
    for volume in pod_spec.get("volumes") or []:
        ref = volume.get("configMap")
        if ref and ref.get("name") in renames:
            ref["name"] = renames[ref["name"]]
    for container in [*(pod_spec.get("initContainers") or []),
                      *(pod_spec.get("containers") or [])]:
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef")
            if ref and ref.get("name") in renames:
                ref["name"] = renames[ref["name"]]
        for variable in container.get("env") or []:
            ref = (variable.get("valueFrom") or {}).get("configMapKeyRef")
            if ref and ref.get("name") in renames:
                ref["name"] = renames[ref["name"]]
