"""Bake's own check of the restricted Pod Security Standard, with plain data: each refused
field is named with its path and fix, and every app's templates (every track, and the
canary and baseline derived from a production bake) pass it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard.domain.bakes import derive_track
from shipyard.domain.catalog import parse_descriptor
from shipyard.domain.manifests import TRACKS, BakeValues, parse_manifests, render_manifests
from shipyard.domain.pod_security import pod_security_violations

PROJECT = Path(__file__).resolve().parents[2]
APPS = sorted(p.parent for p in (PROJECT / "apps").glob("*/app.yaml"))
CONTAINER = "spec.template.spec.containers[0]"


def restricted_pod() -> dict[str, Any]:
    """A pod spec that meets the standard, to spoil one field at a time."""
    return {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "web", "image": "web:1", "ports": [{"containerPort": 8080}],
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": "config", "configMap": {"name": "web"}},
                    {"name": "scratch", "emptyDir": {}}],
    }


def deployment(pod: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": pod}}}


def spoiled(path: str, value: Any) -> dict[str, Any]:
    """The restricted Deployment with the pod-spec field at ``path`` set to ``value``."""
    pod = restricted_pod()
    *parents, last = path.split(".")
    target: Any = pod
    for key in parents:
        target = target[int(key)] if key.isdigit() else target.setdefault(key, {})
    target[last] = value
    return deployment(pod)


def paths(objects: list[dict[str, Any]]) -> list[str]:
    return [v.path for v in pod_security_violations(objects)]


def test_a_pod_that_meets_the_standard_passes():
    assert pod_security_violations([deployment(restricted_pod())]) == []


@pytest.mark.parametrize(("field", "value", "path"), [
    ("containers.0.securityContext.privileged", True,
     f"{CONTAINER}.securityContext.privileged"),
    ("hostNetwork", True, "spec.template.spec.hostNetwork"),
    ("hostPID", True, "spec.template.spec.hostPID"),
    ("hostIPC", True, "spec.template.spec.hostIPC"),
    ("volumes", [{"name": "root", "hostPath": {"path": "/"}}],
     "spec.template.spec.volumes[0].hostPath"),
    ("containers.0.securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
     f"{CONTAINER}.securityContext.capabilities.add"),
    ("containers.0.securityContext.capabilities", {"drop": ["ALL"],
                                                   "add": ["NET_BIND_SERVICE"]},
     f"{CONTAINER}.securityContext.capabilities.add"),
    ("containers.0.securityContext.capabilities", {"drop": ["NET_RAW"]},
     f"{CONTAINER}.securityContext.capabilities.drop"),
    ("containers.0.securityContext.allowPrivilegeEscalation", True,
     f"{CONTAINER}.securityContext.allowPrivilegeEscalation"),
    ("securityContext.runAsNonRoot", False,
     "spec.template.spec.securityContext.runAsNonRoot"),
    ("securityContext.runAsUser", 0, "spec.template.spec.securityContext.runAsUser"),
    ("containers.0.securityContext.runAsUser", 0, f"{CONTAINER}.securityContext.runAsUser"),
    ("securityContext.seccompProfile", {"type": "Unconfined"},
     "spec.template.spec.securityContext.seccompProfile.type"),
    ("containers.0.ports", [{"containerPort": 8080, "hostPort": 8080}],
     f"{CONTAINER}.ports[0].hostPort"),
    ("containers.0.securityContext.procMount", "Unmasked",
     f"{CONTAINER}.securityContext.procMount"),
    ("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}],
     "spec.template.spec.securityContext.sysctls[0].name"),
    ("volumes", [{"name": "socket", "nfs": {"server": "x", "path": "/"}}],
     "spec.template.spec.volumes[0].nfs"),
])
def test_each_field_the_standard_refuses_is_named(field: str, value: Any, path: str):
    assert paths([spoiled(field, value)]) == [path]


def test_a_privileged_container_is_refused_with_the_object_the_field_and_the_fix():
    [violation] = pod_security_violations([spoiled("containers.0.securityContext.privileged",
                                                   True)])
    assert violation.object == "Deployment/web"
    assert str(violation) == (
        "Deployment/web spec.template.spec.containers[0].securityContext.privileged: is "
        "true: container 'web' would hold every capability and device of the node; remove "
        "privileged (the namespace enforces the restricted Pod Security Standard)")


def test_running_as_non_root_and_a_seccomp_profile_may_be_set_per_container_instead():
    pod = restricted_pod()
    del pod["securityContext"]
    assert paths([deployment(pod)]) == [
        "spec.template.spec.securityContext.runAsNonRoot",
        "spec.template.spec.securityContext.seccompProfile"]
    pod["containers"][0]["securityContext"].update(
        runAsNonRoot=True, seccompProfile={"type": "RuntimeDefault"})
    assert paths([deployment(pod)]) == []


def test_init_and_ephemeral_containers_are_held_to_it_too():
    pod = restricted_pod()
    pod["initContainers"] = [{"name": "setup", "securityContext": {"privileged": True,
                                                                   "capabilities": {
                                                                       "drop": ["ALL"]},
                                                                   "allowPrivilegeEscalation":
                                                                       False}}]
    pod["ephemeralContainers"] = [{"name": "debug"}]
    found = paths([deployment(pod)])
    assert "spec.template.spec.initContainers[0].securityContext.privileged" in found
    assert "spec.template.spec.ephemeralContainers[0].securityContext.capabilities.drop" \
        in found


def test_pods_of_every_workload_kind_are_found_and_other_kinds_ignored():
    pod = restricted_pod()
    pod["hostPID"] = True
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod}
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": pod}}}}}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"},
              "data": {"hostPID": "true"}}
    assert paths([bare, cron, config]) == [
        "spec.hostPID", "spec.jobTemplate.spec.template.spec.hostPID"]


def test_an_unconfined_apparmor_annotation_is_refused():
    obj = deployment(restricted_pod())
    obj["spec"]["template"]["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/web": "unconfined"}
    assert paths([obj]) == [
        "spec.template.metadata.annotations[container.apparmor.security.beta.kubernetes.io/web]"]


def test_every_violation_of_a_bake_is_reported_at_once():
    obj = spoiled("hostNetwork", True)
    obj["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    assert len(pod_security_violations([obj, copy.deepcopy(obj)])) == 4


def descriptor_and_templates(app_dir: Path) -> tuple[Any, dict[str, str]]:
    descriptor = parse_descriptor(yaml.safe_load((app_dir / "app.yaml").read_text()),
                                  source=str(app_dir / "app.yaml"))
    templates = {p.name: p.read_text() for p in (app_dir / "deploy").glob("*.yaml.j2")}
    return descriptor, templates


@pytest.mark.parametrize("app_dir", APPS, ids=lambda p: p.name)
def test_every_apps_pods_meet_the_standard_on_every_track(app_dir: Path):
    descriptor, templates = descriptor_and_templates(app_dir)
    for track in TRACKS:
        values = BakeValues(app=descriptor, environment="staging", namespace="ns",
                            version="1.0.0", image="127.0.0.1:5000/x@sha256:" + "a" * 64,
                            release="r1", track=track)
        assert pod_security_violations(parse_manifests(render_manifests(templates,
                                                                        values))) == []


@pytest.mark.parametrize("app_dir", APPS, ids=lambda p: p.name)
def test_canary_and_baseline_derived_from_a_production_bake_keep_it(app_dir: Path):
    descriptor, templates = descriptor_and_templates(app_dir)
    values = BakeValues(app=descriptor, environment="prod", namespace="ns", version="1.0.0",
                        image="127.0.0.1:5000/x@sha256:" + "a" * 64, release="v003",
                        slot="v003")
    stable = parse_manifests(render_manifests(templates, values))
    for track in ("canary", "baseline"):
        derived = derive_track(stable, app=descriptor.name, track=track, replicas=1)
        [pod] = [o["spec"]["template"]["spec"] for o in derived if o["kind"] == "Deployment"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert pod_security_violations(derived) == []
