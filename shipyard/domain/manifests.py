"""Rendering an app's Jinja2 deploy templates into Kubernetes objects: pure, deterministic.

The contract between Shipyard and ``apps/<name>/deploy/*.yaml.j2``: every template is
rendered with the variables of :class:`BakeValues` (``app`` is the descriptor) plus
``labels`` (the standard labels of the objects of this track), ``selector`` (what the
Deployment of this track selects), ``service_selector`` (what the app's Services select:
every track, so canary and baseline pods take their share of the traffic; for a versioned
red/black bake only that version's pods, so applying the Service switches traffic),
``app_selector`` (every pod of the app, whatever its track or version: for peer
discovery), ``service_labels`` (the labels of objects every track shares, such as
Services: without track, version or release, so bakes of different tracks render them
identically) and ``progress_deadline_seconds``. An undefined variable is an error, never
an empty string. Templates render in name order and
the same inputs give the same bytes, so a bake can be compared and stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.sandbox
import yaml

from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.labels import (
    APP_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    RELEASE_LABEL,
    SLOT_LABEL,
    TRACK_LABEL,
    VERSION_LABEL,
)

__all__ = ["SLOT", "TRACKS", "BakeValues", "InvalidManifest", "parse_manifests",
           "render_manifests", "standard_labels"]

TRACKS = ("stable", "canary", "baseline")
SLOT = re.compile(r"v\d{3,6}")


class InvalidManifest(ValueError):
    """A template that does not render, or renders something that is not an object."""


@dataclass(frozen=True, slots=True)
class BakeValues:
    """What one bake of one app for one environment and track is made from."""

    app: AppDescriptor
    environment: str
    namespace: str
    version: str
    image: str
    release: str
    track: str = "stable"
    replicas: int = 1
    config: Mapping[str, str] = field(default_factory=dict)
    slot: str = ""
    """For red/black: the versioned name of this stable bake (``v007``). The Deployment is
    then ``<app>-v007`` beside the earlier ones, and the app's Services select only its
    pods, so applying the Services is the traffic switch."""
    progress_deadline_seconds: int = 120

    @property
    def name(self) -> str:
        """The Deployment's name: ``<app>-<slot>`` for a versioned bake, the app's for the
        stable track, ``<app>-<track>`` else."""
        if self.slot:
            return f"{self.app.name}-{self.slot}"
        return self.app.name if self.track == "stable" else f"{self.app.name}-{self.track}"


def standard_labels(values: BakeValues) -> dict[str, str]:
    """The labels of every object Shipyard applies (``kubectl get -L`` shows what Shipyard
    did): name, version, managed-by, track and release."""
    labels = {
        APP_LABEL: values.app.name,
        VERSION_LABEL: _label_value(values.version),
        MANAGED_BY_LABEL: MANAGED_BY,
        TRACK_LABEL: values.track,
        RELEASE_LABEL: _label_value(values.release),
    }
    if values.slot:
        labels[SLOT_LABEL] = values.slot
    return labels


def render_manifests(templates: Mapping[str, str], values: BakeValues) -> str:
    """Render ``templates`` (file name -> Jinja2 text) into one YAML stream, documents
    separated by ``---``, in file-name order. Raises :class:`InvalidManifest` naming the
    template and the problem."""
    if values.slot and (values.track != "stable" or not SLOT.fullmatch(values.slot)):
        raise InvalidManifest(f"slot {values.slot!r} must look like v007 and is for the "
                              "stable track only")
    if values.track not in TRACKS:
        raise InvalidManifest(f"track {values.track!r} is not one of {', '.join(TRACKS)}")
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    variables = _variables(values)
    documents = []
    for name in sorted(templates):
        try:
            rendered = environment.from_string(templates[name]).render(variables)
        except jinja2.TemplateError as err:
            where = f" line {err.lineno}" if isinstance(err, jinja2.TemplateSyntaxError) else ""
            raise InvalidManifest(f"{name}{where}: {err}") from err
        documents.append(f"# Source: {name}\n{rendered.strip()}\n")
    return "---\n".join(documents)


def parse_manifests(stream: str) -> list[dict[str, Any]]:
    """The objects of a rendered stream; each must have apiVersion, kind and a name."""
    try:
        loaded = [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    except yaml.YAMLError as err:
        raise InvalidManifest(f"the rendered manifests are not YAML: {err}") from err
    for index, obj in enumerate(loaded):
        if not isinstance(obj, dict) or not all(k in obj for k in ("apiVersion", "kind")):
            raise InvalidManifest(f"document {index + 1} is not a Kubernetes object "
                                  "(apiVersion and kind are required)")
        if not isinstance(obj.get("metadata"), dict) or not obj["metadata"].get("name"):
            raise InvalidManifest(f"document {index + 1} ({obj['kind']}) has no metadata.name")
    return loaded


def _variables(values: BakeValues) -> dict[str, Any]:
    labels = standard_labels(values)
    selector = {APP_LABEL: values.app.name, TRACK_LABEL: values.track}
    service_selector = {APP_LABEL: values.app.name}
    if values.slot:
        selector[SLOT_LABEL] = values.slot
        service_selector = dict(selector)
    return {
        "app": values.app, "environment": values.environment, "namespace": values.namespace,
        "version": values.version, "image": values.image, "release": values.release,
        "track": values.track, "replicas": values.replicas, "name": values.name,
        "config": dict(sorted(values.config.items())),
        "labels": labels,
        "selector": selector,
        "service_selector": service_selector,
        "app_selector": {APP_LABEL: values.app.name},
        "progress_deadline_seconds": values.progress_deadline_seconds,
        "service_labels": {APP_LABEL: values.app.name, MANAGED_BY_LABEL: MANAGED_BY},
    }


def _label_value(text: str) -> str:
    """A label value: at most 63 of ``[A-Za-z0-9._-]``, alphanumeric at both ends."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in text)[:63]
    return cleaned.strip("._-")
