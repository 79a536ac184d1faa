"""An app's fault file in its ConfigMap: find it, read it, write it.

A write is a JSON merge patch of the one key, under field manager ``shipyard-chaos``, so it
leaves the rest of the ConfigMap alone and the next deploy's server-side apply (field
manager ``shipyard``, forced) takes the key back. The fault file as it was before the
first change is kept in an annotation of the ConfigMap
(:data:`~shipyard.domain.fault_files.SAVED_FAULTS_ANNOTATION`) until it is put back, so a
rollback restores what the release had, even from another process.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import refused
from shipyard.domain.fault_files import SAVED_FAULTS_ANNOTATION, FaultFileRef, fault_file_of

__all__ = ["FAULTS_MANAGER", "FaultConfigMaps", "FaultFile"]

FAULTS_MANAGER = "shipyard-chaos"


@dataclass(frozen=True, slots=True)
class FaultFile:
    """A fault file as the ConfigMap has it now, and what it was before an experiment
    changed it (None when no experiment did)."""

    ref: FaultFileRef
    text: str
    saved: str | None


@dataclass
class FaultConfigMaps:
    kube: Kube

    def locate(self, namespace: str, deployment: str) -> FaultFileRef:
        """Where the pods of Deployment ``deployment`` read their fault file; ValueError
        when they read none."""
        return fault_file_of(self.kube.deployment(namespace, deployment))

    def read(self, namespace: str, ref: FaultFileRef) -> FaultFile:
        """The fault file ``ref`` names, as it is now (empty when the key is absent)."""
        configmap = self.kube.get({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": ref.configmap,
                                                "namespace": namespace}})
        if configmap is None:
            raise refused(f"reading configmap {namespace}/{ref.configmap}", 404, "not found")
        annotations = configmap.get("metadata", {}).get("annotations") or {}
        saved = annotations.get(SAVED_FAULTS_ANNOTATION)
        return FaultFile(ref, str((configmap.get("data") or {}).get(ref.key, "")),
                         saved if isinstance(saved, str) else None)

    def write(self, namespace: str, ref: FaultFileRef, text: str, *,
              saved: str | None) -> None:
        """Set the fault file to ``text`` and the annotation to ``saved`` (None removes
        it), in one patch."""
        status, answer = self.kube.client.call(
            "PATCH", f"/api/v1/namespaces/{namespace}/configmaps/{ref.configmap}",
            query={"fieldManager": FAULTS_MANAGER},
            body={"metadata": {"annotations": {SAVED_FAULTS_ANNOTATION: saved}},
                  "data": {ref.key: text}},
            content_type="application/merge-patch+json")
        if status != 200:
            raise refused(f"writing {ref.key} of configmap {namespace}/{ref.configmap}",
                          status, answer)
