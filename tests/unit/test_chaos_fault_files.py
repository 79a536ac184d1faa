"""The chaos actions' view of an app's fault file, as plain data: where each app's
Deployment (as its templates render it) mounts it, what is written into it, and how an
answer shows that a pod reads it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard.domain.catalog import parse_descriptor
from shipyard.domain.fault_files import FaultFileRef, Faults, fault_file_of
from shipyard.domain.manifests import BakeValues, parse_manifests, render_manifests

APPS = Path(__file__).resolve().parents[2] / "apps"
APP_NAMES = sorted(p.parent.name for p in APPS.glob("*/app.yaml"))


def deployment(app: str, track: str = "stable") -> dict[str, Any]:
    """``app``'s Deployment as a staging bake renders it."""
    descriptor = parse_descriptor(yaml.safe_load((APPS / app / "app.yaml").read_text()),
                                  source=app)
    templates = {p.name: p.read_text() for p in (APPS / app / "deploy").glob("*.j2")}
    values = BakeValues(app=descriptor, environment="staging", namespace="shipyard-staging",
                        version="abc123", image=f"127.0.0.1:5000/shipyard/{app}@sha256:"
                        + "0" * 64, release="r-1", track=track)
    objects = parse_manifests(render_manifests(templates, values))
    return next(o for o in objects if o["kind"] == "Deployment")


@pytest.mark.parametrize("app", APP_NAMES)
def test_every_app_reads_its_fault_file_from_the_faults_key_of_its_configmap(app):
    assert fault_file_of(deployment(app)) == FaultFileRef(f"{app}-config", "faults.json")


def with_pod(change: Any) -> dict[str, Any]:
    rendered = copy.deepcopy(deployment("gateway"))
    change(rendered["spec"]["template"]["spec"])
    return rendered


def test_a_configmap_item_that_renames_the_key_is_followed():
    def rename(pod: dict) -> None:
        pod["volumes"][0]["configMap"]["items"] = [{"key": "chaos", "path": "faults.json"}]
    assert fault_file_of(with_pod(rename)) == FaultFileRef("gateway-config", "chaos")


@pytest.mark.parametrize(("change", "message"), [
    (lambda pod: pod["containers"][0]["env"].clear(), "no container sets FAULT_CONFIG_FILE"),
    (lambda pod: pod["containers"][0]["volumeMounts"][0].update(subPath="faults.json"),
     "subPath mount, which the kubelet never updates"),
    (lambda pod: pod["volumes"][0].update(configMap=None, emptyDir={}),
     "is not in a ConfigMap volume"),
    (lambda pod: pod["containers"][0]["volumeMounts"].clear(), "is not on a mounted volume"),
])
def test_a_fault_file_the_kubelet_cannot_update_or_that_is_not_there_is_refused(change,
                                                                                message):
    with pytest.raises(ValueError, match=message):
        fault_file_of(with_pod(change))


def test_faults_are_written_with_every_key_servicekit_reads():
    text = Faults(latency_ms=250).to_text()
    assert json.loads(text) == {"FAULT_ERROR_RATE": 0.0, "FAULT_LATENCY_MS": 250.0,
                                "FAULT_LATENCY_JITTER_MS": 0.0, "FAULT_READINESS_FAIL": False}
    assert Faults.from_text(text) == Faults(latency_ms=250)


def test_servicekits_own_spellings_read_back():
    assert Faults.from_text('{"FAULT_ERROR_RATE": "0.5", "FAULT_READINESS_FAIL": "true"}') \
        == Faults(error_rate=0.5, readiness_fail=True)
    assert Faults.from_text("") == Faults() and not Faults().active


@pytest.mark.parametrize("kwargs", [{"error_rate": 1.5}, {"latency_ms": -1},
                                    {"latency_jitter_ms": float("inf")},
                                    {"readiness_fail": "yes"}, {"error_rate": True}])
def test_faults_out_of_range_are_refused(kwargs):
    with pytest.raises(ValueError, match="must be"):
        Faults(**kwargs)


@pytest.mark.parametrize("text", ["[1]", "{", '{"FAULT_LATENCY_MS": "slow"}'])
def test_a_fault_file_that_says_something_else_is_refused(text):
    with pytest.raises(ValueError, match=r"fault file|not a number"):
        Faults.from_text(text)


@pytest.mark.parametrize(("faults", "latency", "status", "shown"), [
    (Faults(latency_ms=500), 0.46, 200, True),
    (Faults(latency_ms=500), 0.2, 200, False),
    (Faults(error_rate=1.0), 0.01, 500, True),
    (Faults(error_rate=1.0), 0.01, 200, False),
    (Faults(error_rate=1.0, latency_ms=300), 0.31, 500, True),
    (Faults(error_rate=1.0, latency_ms=300), 0.31, 200, False),
])
def test_an_answer_shows_the_faults_by_its_latency_or_its_status(faults, latency, status,
                                                                  shown):
    assert faults.observable
    assert faults.shown_by(latency, status) is shown


@pytest.mark.parametrize("faults", [Faults(error_rate=0.3), Faults(readiness_fail=True)])
def test_faults_that_show_on_some_answers_only_cannot_be_confirmed(faults):
    assert faults.active and not faults.observable
