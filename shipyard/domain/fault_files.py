"""An app's fault file as plain data: where a Deployment mounts it, what to write in it, and
how to tell from an answer that a pod reads it.

Every app made with servicekit reads its faults (error rate, latency, failing readiness)
from the file ``FAULT_CONFIG_FILE`` names, a key of a ConfigMap mounted into the pod, and
reads it again whenever it changes (``servicekit.faults``). The chaos actions write that
key. The kubelet, not the app, is what makes a change slow to arrive: it rewrites a
ConfigMap volume when it next syncs the pod (``syncFrequency`` plus up to half of it as
jitter), so an injected fault reaches each pod within 15 s on the local cluster (10 s) and
within 90 s on a kubelet with the default minute.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FAULT_FILE_VARIABLE", "OPERATIONAL_PATHS", "SAVED_FAULTS_ANNOTATION",
           "FaultFileRef", "Faults", "fault_file_of"]

FAULT_FILE_VARIABLE = "FAULT_CONFIG_FILE"
OPERATIONAL_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/version"})
"""The paths servicekit never slows or fails (``servicekit.routes.OPERATIONAL_PATHS``): a
probe must report the service's real state. Faults show on the app's own paths only."""
SAVED_FAULTS_ANNOTATION = "shipyard.dev/faults-before-chaos"
"""Where the ConfigMap keeps the fault file as it was before an experiment changed it, so
the rollback puts back what the release had, not an empty file."""


@dataclass(frozen=True, slots=True)
class FaultFileRef:
    """The fault file of an app: key ``key`` of ConfigMap ``configmap``."""

    configmap: str
    key: str


def fault_file_of(deployment: Mapping[str, Any]) -> FaultFileRef:
    """Where ``deployment``'s pods read their fault file: the container whose environment
    sets :data:`FAULT_FILE_VARIABLE`, the ConfigMap volume mounted over that path, the key
    that becomes the file. Raises ValueError saying what is missing."""
    name = deployment.get("metadata", {}).get("name", "?")
    pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("containers") or []:
        path = next((e.get("value") for e in container.get("env") or []
                     if e.get("name") == FAULT_FILE_VARIABLE), None)
        if isinstance(path, str) and path:
            return _mounted(name, pod, container, path)
    raise ValueError(f"deployment {name}: no container sets {FAULT_FILE_VARIABLE}; faults "
                     "can only be injected into an app that reads a fault file")


def _mounted(name: str, pod: Mapping[str, Any], container: Mapping[str, Any],
             path: str) -> FaultFileRef:
    path = posixpath.normpath(path)
    for mount in container.get("volumeMounts") or []:
        mounted = posixpath.normpath(str(mount.get("mountPath", "")))
        if path != mounted and not path.startswith(mounted.rstrip("/") + "/"):
            continue
        if mount.get("subPath") or mount.get("subPathExpr"):
            raise ValueError(f"deployment {name}: {path} is a subPath mount, which the "
                             "kubelet never updates; mount the ConfigMap as a directory")
        relative = posixpath.relpath(path, mounted)
        volume: Mapping[str, Any] = next((v for v in pod.get("volumes") or []
                                          if v.get("name") == mount.get("name")), {})
        source = volume.get("configMap")
        if not isinstance(source, Mapping) or not source.get("name"):
            raise ValueError(f"deployment {name}: {path} is not in a ConfigMap volume")
        items = source.get("items")
        if items:
            key = next((i.get("key") for i in items if i.get("path") == relative), None)
        else:
            key = relative if "/" not in relative else None
        if not key:
            raise ValueError(f"deployment {name}: no key of ConfigMap {source['name']} "
                             f"becomes {path}")
        return FaultFileRef(str(source["name"]), str(key))
    raise ValueError(f"deployment {name}: {path} ({FAULT_FILE_VARIABLE}) is not on a "
                     "mounted volume")


@dataclass(frozen=True, slots=True)
class Faults:
    """What a fault file says, servicekit's keys: ``error_rate`` of the requests answer
    500, each delayed ``latency_ms`` plus up to ``latency_jitter_ms``; ``readiness_fail``
    fails ``/readyz``."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    readiness_fail: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.error_rate, bool) or not 0 <= self.error_rate <= 1:
            raise ValueError(f"error_rate {self.error_rate!r} must be a share in [0, 1]")
        for name in ("latency_ms", "latency_jitter_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (0 <= value < math.inf):
                raise ValueError(f"{name} {value!r} must be a number of milliseconds >= 0")
        if not isinstance(self.readiness_fail, bool):
            raise ValueError(f"readiness_fail {self.readiness_fail!r} must be true or false")

    @classmethod
    def from_text(cls, text: str) -> Faults:
        """The faults a fault file written as JSON says (absent keys inject nothing);
        ValueError when it says something else."""
        try:
            raw = json.loads(text or "{}")
        except ValueError as err:
            raise ValueError(f"the fault file is not JSON: {err}") from err
        if not isinstance(raw, dict):
            raise ValueError("the fault file must be a JSON object of FAULT_* keys")

        def number(key: str) -> float:
            value = raw.get(key, 0)
            try:
                return float(value)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{key} {value!r} is not a number") from err

        readiness = raw.get("FAULT_READINESS_FAIL", False)
        return cls(error_rate=number("FAULT_ERROR_RATE"),
                   latency_ms=number("FAULT_LATENCY_MS"),
                   latency_jitter_ms=number("FAULT_LATENCY_JITTER_MS"),
                   readiness_fail=readiness is True or str(readiness).lower() in (
                       "1", "true", "yes", "on"))

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.latency_ms or self.latency_jitter_ms
                    or self.readiness_fail)

    def to_text(self) -> str:
        """The fault file (JSON of ``FAULT_*`` keys), every key written out."""
        return json.dumps({"FAULT_ERROR_RATE": self.error_rate,
                           "FAULT_LATENCY_MS": self.latency_ms,
                           "FAULT_LATENCY_JITTER_MS": self.latency_jitter_ms,
                           "FAULT_READINESS_FAIL": self.readiness_fail}, sort_keys=True)

    @property
    def observable(self) -> bool:
        """Whether every answer of a pod that reads these faults shows them: a latency, or
        an error rate of 1. A smaller error rate shows only on some answers."""
        return self.latency_ms > 0 or self.error_rate >= 1

    def shown_by(self, latency_seconds: float, status: int) -> bool:
        """Whether one answer (its latency, its HTTP status) came from a pod that reads
        these faults. Only meaningful when :attr:`observable`."""
        if self.latency_ms > 0 and latency_seconds < 0.9 * self.latency_ms / 1000:
            return False
        return not (self.error_rate >= 1 and status != 500)
