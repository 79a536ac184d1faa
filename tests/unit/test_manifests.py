"""Deploy templates render deterministically into objects that carry the standard labels;
every app's own templates are held to the contract here, with plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard.domain.catalog import AppDescriptor, parse_descriptor
from shipyard.domain.manifests import (
    TRACKS,
    BakeValues,
    InvalidManifest,
    parse_manifests,
    render_manifests,
    standard_labels,
)

PROJECT = Path(__file__).resolve().parents[2]
APPS = sorted(p.parent for p in (PROJECT / "apps").glob("*/deploy") if
              (p.parent / "app.yaml").exists())
IMAGE = "127.0.0.1:5000/shipyard/app@sha256:" + "ab" * 32


def templates_of(app_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((app_dir / "deploy").glob("*.yaml.j2"))}


def descriptor_of(app_dir: Path) -> AppDescriptor:
    return parse_descriptor(yaml.safe_load((app_dir / "app.yaml").read_text()),
                            source=str(app_dir / "app.yaml"))


def values(app: AppDescriptor, track: str = "stable", **overrides: Any) -> BakeValues:
    fields: dict[str, Any] = {
        "app": app, "environment": "staging", "namespace": "shipyard-staging",
        "version": "1.4.0+abc123", "image": IMAGE, "release": "r42", "track": track,
        "replicas": 2}
    fields.update(overrides)
    return BakeValues(**fields)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_every_app_has_deploy_templates() -> None:
    described = {p.parent.name for p in (PROJECT / "apps").glob("*/app.yaml")}
    assert described, "no apps found"
    assert described == {p.name for p in APPS}, "an app without deploy/*.yaml.j2"


@pytest.mark.parametrize("app_dir", APPS, ids=lambda p: p.name)
@pytest.mark.parametrize("track", TRACKS)
def test_an_apps_templates_render_the_contract(app_dir: Path, track: str) -> None:
    app = descriptor_of(app_dir)
    bake = values(app, track)
    objects = parse_manifests(render_manifests(templates_of(app_dir), bake))

    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds
    for obj in objects:
        assert obj["metadata"]["namespace"] == "shipyard-staging"
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == app.name
        assert labels["app.kubernetes.io/managed-by"] == "shipyard"
    [deployment] = by_kind(objects, "Deployment")
    assert deployment["metadata"]["name"] == bake.name
    assert deployment["metadata"]["labels"] == standard_labels(bake)
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/name": app.name,
                                               "shipyard.dev/track": track}
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    [container] = [c for c in spec["template"]["spec"]["containers"] if c["name"] == app.name]
    assert container["image"] == IMAGE
    assert container["readinessProbe"]["httpGet"]["path"] == app.readiness_path
    assert container["livenessProbe"]["httpGet"]["path"] == app.liveness_path
    assert container["resources"]["requests"] == {"cpu": app.resources.cpu_request,
                                                  "memory": app.resources.memory_request}
    assert container["resources"]["limits"] == {"cpu": app.resources.cpu_limit,
                                                "memory": app.resources.memory_limit}
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 10
    for service in by_kind(objects, "Service"):
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": app.name}
    config_names = {c["metadata"]["name"] for c in by_kind(objects, "ConfigMap")}
    assert all(name.startswith(bake.name) for name in config_names), "one per track"


@pytest.mark.parametrize("app_dir", APPS, ids=lambda p: p.name)
def test_the_same_inputs_bake_the_same_bytes_and_tracks_share_their_services(
        app_dir: Path) -> None:
    app, templates = descriptor_of(app_dir), templates_of(app_dir)
    first = render_manifests(templates, values(app))
    assert render_manifests(templates, values(app)) == first
    assert render_manifests(templates, values(app, version="1.5.0")) != first

    def services(track: str) -> list[dict[str, Any]]:
        return by_kind(parse_manifests(render_manifests(templates, values(app, track))),
                       "Service")

    assert services("stable") == services("canary") == services("baseline")


@pytest.mark.parametrize("app_dir", APPS, ids=lambda p: p.name)
def test_the_version_reaches_the_app(app_dir: Path) -> None:
    rendered = render_manifests(templates_of(app_dir), values(descriptor_of(app_dir)))
    [config] = [c for c in by_kind(parse_manifests(rendered), "ConfigMap")
                if "APP_VERSION" in c["data"]]
    assert config["data"]["APP_VERSION"] == "1.4.0+abc123"


# -- the renderer on plain data -----------------------------------------------------------

APP = AppDescriptor(name="web", port=8080, liveness_path="/healthz", readiness_path="/readyz",
                    depends_on=())


def test_an_undefined_variable_is_an_error_naming_the_template() -> None:
    with pytest.raises(InvalidManifest, match=r"svc\.yaml\.j2: 'nope' is undefined"):
        render_manifests({"svc.yaml.j2": "kind: {{ nope }}"}, values(APP))


def test_a_syntax_error_names_the_template_and_line() -> None:
    with pytest.raises(InvalidManifest, match=r"x\.yaml\.j2 line 2"):
        render_manifests({"x.yaml.j2": "a: 1\nb: {{ name \n"}, values(APP))


def test_templates_render_in_name_order_with_their_source() -> None:
    rendered = render_manifests({"b.yaml.j2": "kind: B\n", "a.yaml.j2": "kind: A\n"},
                                values(APP))
    assert rendered == "# Source: a.yaml.j2\nkind: A\n---\n# Source: b.yaml.j2\nkind: B\n"


def test_an_unknown_track_is_refused() -> None:
    with pytest.raises(InvalidManifest, match="track 'blue'"):
        render_manifests({}, values(APP, track="blue"))


@pytest.mark.parametrize(("stream", "problem"), [
    ("kind: [", "not YAML"),
    ("- a\n- b\n", "document 1 is not a Kubernetes object"),
    ("apiVersion: v1\nkind: Service\nmetadata: {}\n",
     r"document 1 \(Service\) has no metadata\.name"),
])
def test_what_is_not_an_object_is_refused(stream: str, problem: str) -> None:
    with pytest.raises(InvalidManifest, match=problem):
        parse_manifests(stream)


def test_label_values_are_made_valid() -> None:
    labels = standard_labels(values(APP, version="1.4.0+build/7", release="#12"))
    assert labels["app.kubernetes.io/version"] == "1.4.0-build-7"
    assert labels["shipyard.dev/release"] == "12"


def test_templates_cannot_reach_python_internals() -> None:
    with pytest.raises(InvalidManifest):
        render_manifests({"x.yaml.j2": "{{ app.__class__.__mro__ }}"}, values(APP))
