"""Least privilege on Kubernetes, against the real API server of the session's cluster.

The session's environments and identities come from the product's own `shipyard up
--only kubernetes` (the `session_environments` fixture). The API server itself holds the
boundaries: a deploy identity may do what the stages do in its own environment and is
Forbidden anywhere else and with anything else; the read-only identity cannot change
anything; a restricted environment refuses a privileged pod at admission while every
app's own pod passes; and bake refuses a privileged manifest, naming the field, before
the API server sees it.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from git import Actor, Repo
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prefect import flow

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.adapters.kube_client import KubeError
from shipyard.adapters.kube_identity import (
    deploy_kubeconfig,
    open_identity,
    token_expiry,
    viewer_kubeconfig,
)
from shipyard.domain.catalog import parse_descriptor
from shipyard.domain.images import ImageRef
from shipyard.domain.manifests import BakeValues, parse_manifests, render_manifests
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.stack.environments import EnvironmentBootstrap
from shipyard.store import Store
from stages.bake import bake_manifests
from stages.lifecycle import PipelineFailed, begin_run, running
from stages.releases import ReleasePlan
from tests.support.stack import PROJECT, Stack

pytestmark = pytest.mark.integration

FORBIDDEN = 403
CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}


@dataclass(frozen=True)
class World:
    prefix: str
    admin: Kube
    staging: Kube
    """The deploy identity of the staging environment."""
    viewer: Kube
    settings: Settings

    def namespace(self, environment: str) -> str:
        return self.prefix + environment


@pytest.fixture(scope="module")
def world(stack_home: Stack, real_cluster: Path, session_environments: Path) -> World:
    prefix = stack_home.env["SHIPYARD_NAMESPACE_PREFIX"]
    settings = Settings(home=stack_home.home, namespace_prefix=prefix, kubeconfig=real_cluster)
    return World(
        prefix, Kube.from_kubeconfig(real_cluster),
        open_identity(deploy_kubeconfig(stack_home.home, f"{prefix}staging"), what="staging"),
        open_identity(viewer_kubeconfig(stack_home.home, f"{prefix}system"), what="viewer"),
        settings)


def answer(call: Callable[[], object]) -> int:
    """The HTTP status the API server answered ``call`` with (200 when it succeeded)."""
    try:
        call()
    except ApiException as err:
        return int(err.status or 0)
    except KubeError as err:  # Shipyard's own adapter calls
        return err.status
    return 200


# The client's typed methods take its model classes; these tests send the API's JSON.
def core_api(kube: Kube) -> Any:
    return client.CoreV1Api(kube.client.api)


def apps_api(kube: Kube) -> Any:
    return client.AppsV1Api(kube.client.api)


def rbac_api(kube: Kube) -> Any:
    return client.RbacAuthorizationV1Api(kube.client.api)


def config_map(name: str, namespace: str) -> dict[str, Any]:
    return {**CONFIG_MAP, "metadata": {"name": name, "namespace": namespace}}


# -- the identities `shipyard up` wrote ------------------------------------------------------


def test_up_writes_each_identity_as_a_service_account_token_for_its_owner_only(
        world: World, session_environments: Path):
    system = world.namespace("system")
    assert KubeBootstrap(world.staging.client).whoami() == \
        f"system:serviceaccount:{system}:deploy-staging"
    assert KubeBootstrap(world.viewer.client).whoami() == \
        f"system:serviceaccount:{system}:viewer"
    assert stat.S_IMODE(session_environments.stat().st_mode) == 0o700
    files = sorted(session_environments.glob("*.kubeconfig"))
    assert [f.name for f in files] == [f"deploy-{world.prefix}prod.kubeconfig",
                                       f"deploy-{world.prefix}staging.kubeconfig",
                                       f"viewer-{system}.kubeconfig"]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        lives = (token_expiry(path) or datetime.now(UTC)) - datetime.now(UTC)
        assert timedelta(days=29) < lives <= timedelta(days=30), path.name
        user = yaml.safe_load(path.read_text())["users"][0]["user"]
        assert set(user) == {"token"}  # no client certificate, nothing of the admin's


def test_the_bootstrap_keeps_current_tokens_and_renews_those_near_expiry(world: World,
                                                                          real_cluster: Path):
    bootstrap = EnvironmentBootstrap(world.settings, real_cluster)
    before = {i.account: i.kubeconfig.read_text() for i in bootstrap.identities()}
    assert bootstrap.ensure() == []
    assert {i.account: i.kubeconfig.read_text() for i in bootstrap.identities()} == before
    # Sixteen days on, less than half of the thirty is left: every token is renewed.
    later = datetime.now(UTC) + timedelta(days=16)
    assert bootstrap.ensure(now=later) == ["deploy-staging", "deploy-prod", "viewer"]
    for identity in bootstrap.identities():
        assert identity.kubeconfig.read_text() != before[identity.account]
        assert KubeBootstrap.from_kubeconfig(identity.kubeconfig).whoami().endswith(
            identity.account)


# -- a deploy identity ------------------------------------------------------------------------


def test_a_deploy_identity_does_in_its_environment_what_the_stages_do(world: World):
    staging = world.namespace("staging")
    core, apps = core_api(world.staging), apps_api(world.staging)
    applied = world.staging.apply(config_map("least-privilege-probe", staging))
    assert applied["metadata"]["namespace"] == staging
    assert world.staging.delete(applied)
    assert world.staging.apply(config_map("never-stored", staging), dry_run=True)
    assert answer(lambda: apps.list_namespaced_deployment(staging)) == 200
    assert answer(lambda: core.list_namespaced_pod(staging)) == 200
    assert answer(lambda: core.list_namespaced_event(staging)) == 200
    assert answer(lambda: core.read_namespace(staging)) == 200


def test_a_deploy_identity_is_forbidden_in_another_environment(world: World):
    prod = world.namespace("prod")
    core, apps = core_api(world.staging), apps_api(world.staging)
    assert answer(lambda: world.staging.apply(config_map("x", prod))) == FORBIDDEN
    assert answer(lambda: core.create_namespaced_config_map(
        prod, config_map("x", prod))) == FORBIDDEN
    assert answer(lambda: apps.list_namespaced_deployment(prod)) == FORBIDDEN
    assert answer(lambda: core.list_namespaced_pod(prod)) == FORBIDDEN
    assert answer(lambda: core.delete_collection_namespaced_pod(prod)) == FORBIDDEN
    assert answer(lambda: core.read_namespace(prod)) == FORBIDDEN


def test_a_deploy_identity_is_forbidden_cluster_wide_and_outside_the_stages_kinds(
        world: World):
    staging, system = world.namespace("staging"), world.namespace("system")
    core, rbac = core_api(world.staging), rbac_api(world.staging)
    forbidden = {
        "list nodes": lambda: core.list_node(),
        "list namespaces": lambda: core.list_namespace(),
        "create a namespace": lambda: core.create_namespace(
            {"metadata": {"name": f"{world.prefix}elsewhere"}}),
        "lift its namespace's pod security": lambda: core.patch_namespace(
            staging, {"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "privileged"}}}),
        "read cluster roles": lambda: rbac.list_cluster_role(),
        "read secrets in kube-system": lambda: core.list_namespaced_secret("kube-system"),
        "read secrets in its environment": lambda: core.list_namespaced_secret(staging),
        "make a Role": lambda: rbac.create_namespaced_role(staging, {
            "metadata": {"name": "more"}, "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        "bind itself to admin": lambda: rbac.create_namespaced_role_binding(staging, {
            "metadata": {"name": "more"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "deploy-staging",
                          "namespace": system}]}),
        "create a bare pod": lambda: core.create_namespaced_pod(staging, {
            "metadata": {"name": "bare"},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}),
        "exec into a pod": lambda: core.connect_get_namespaced_pod_exec(
            "any", staging, command=["true"]),
        "mint a token for the viewer": lambda: core.create_namespaced_service_account_token(
            "viewer", system, {"spec": {"expirationSeconds": 600}}),
        "read the accounts' namespace": lambda: core.list_namespaced_service_account(system),
    }
    answers = {what: answer(call) for what, call in forbidden.items()}
    assert answers == dict.fromkeys(forbidden, FORBIDDEN)


# -- the read-only identity ---------------------------------------------------------------------


def test_the_read_only_identity_reads_what_the_board_shows_and_changes_nothing(world: World):
    staging = world.namespace("staging")
    core, apps = core_api(world.viewer), apps_api(world.viewer)
    assert answer(lambda: apps.list_namespaced_deployment(staging)) == 200
    assert answer(lambda: core.list_namespaced_service(staging)) == 200
    assert world.viewer.get({"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": "no-such-app", "namespace": staging}}) is None
    refused = {
        "create": lambda: world.viewer.apply(config_map("x", staging)),
        "dry-run create": lambda: world.viewer.apply(config_map("x", staging), dry_run=True),
        "patch": lambda: apps.patch_namespaced_deployment(
            "discovery", staging, {"spec": {"replicas": 0}}),
        "scale": lambda: world.viewer.scale(staging, "discovery", 0),
        "delete": lambda: core.delete_namespaced_service("discovery", staging),
        "delete pods": lambda: core.delete_collection_namespaced_pod(staging),
        "read secrets": lambda: core.list_namespaced_secret(staging),
        "list pods": lambda: core.list_namespaced_pod(staging),
    }
    answers = {what: answer(call) for what, call in refused.items()}
    assert answers == dict.fromkeys(refused, FORBIDDEN)


# -- pod security at admission -------------------------------------------------------------


def privileged_pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/any:1",
                                     "securityContext": {"privileged": True}}]}}


def test_a_restricted_environment_refuses_a_privileged_pod_at_admission(world: World):
    # The admin may create pods: what refuses this one is admission, not RBAC.
    core = core_api(world.admin)
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(world.namespace("prod"), privileged_pod("privileged"))
    assert refused.value.status == FORBIDDEN
    message = json.loads(str(refused.value.body))["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert 'container "c" must not set securityContext.privileged=true' in message
    assert answer(lambda: core.read_namespaced_pod("privileged",
                                                   world.namespace("prod"))) == 404


@pytest.mark.parametrize("app", ["data", "discovery", "gateway", "streaming"])
def test_every_apps_own_pod_passes_restricted_admission(world: World, app: str):
    app_dir = PROJECT / "apps" / app
    descriptor = parse_descriptor(yaml.safe_load((app_dir / "app.yaml").read_text()),
                                  source=app)
    namespace = world.namespace("staging")
    templates = {p.name: p.read_text() for p in (app_dir / "deploy").glob("*.yaml.j2")}
    values = BakeValues(app=descriptor, environment="staging", namespace=namespace,
                        version="1.0.0", image=f"127.0.0.1:5000/shipyard/{app}:admission",
                        release="r-admission")
    [deployment] = [o for o in parse_manifests(render_manifests(templates, values))
                    if o["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{app}-admission", **template["metadata"]},
           "spec": template["spec"]}
    created = core_api(world.admin).create_namespaced_pod(namespace, pod, dry_run="All")
    assert created.spec.security_context.seccomp_profile.type == "RuntimeDefault"


# -- bake ------------------------------------------------------------------------------------


@flow(name="least-privilege-bake")
async def bake_once(plan: ReleasePlan) -> str:
    run = await begin_run("cd", (StageSpec("bake:discovery"),), run_id=None, trigger="test")
    async with running(run):
        await bake_manifests(run, plan, ["staging"], stage_ref="bake:discovery")
    return run.run_id


@pytest.fixture
def privileged_commit(source_repo: Any) -> Iterator[str]:
    """A commit whose discovery Deployment asks for a privileged container."""
    repo = Repo(source_repo.path)
    template = Path(source_repo.path) / "apps/discovery/deploy/deployment.yaml.j2"
    original = template.read_text()
    repo.create_head("privileged", source_repo.good).checkout()
    template.write_text(original.replace("allowPrivilegeEscalation: false",
                                         "allowPrivilegeEscalation: false\n"
                                         "            privileged: true"))
    repo.index.add([str(template.relative_to(source_repo.path))])
    author = Actor("Mallory", "mallory@example.com")
    sha = repo.index.commit("Run discovery privileged", author=author,
                            committer=author).hexsha
    repo.heads["main"].checkout()
    yield sha


def test_bake_refuses_a_privileged_manifest_naming_the_field_and_applies_nothing(
        prefect_stack: Stack, world: World, privileged_commit: str, source_repo: Any,
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SHIPYARD_NAMESPACE_PREFIX", world.prefix)
    descriptor = parse_descriptor(yaml.safe_load(
        (PROJECT / "apps/discovery/app.yaml").read_text()), source="discovery")
    plan = ReleasePlan(app="discovery", environment="staging",
                       version=privileged_commit[:12],
                       commit_sha=privileged_commit, ci_run_id="", depends_on=[],
                       repo_url=str(source_repo.path), descriptor=descriptor,
                       image=ImageRef.of_app("127.0.0.1:5000", "discovery",
                                             "sha256:" + "a" * 64))
    with pytest.raises(PipelineFailed) as failed:
        asyncio.run(bake_once(plan))
    bake = Store.open(prefect_stack.store_url).get_run(failed.value.run.id).stage(
        "bake:discovery")
    assert (bake.state, bake.reason) == (State.FAILED, "PodSecurity")
    assert ("Deployment/discovery spec.template.spec.containers[0].securityContext"
            ".privileged: is true") in bake.message
    assert "remove privileged" in bake.message
    assert "refused before anything was applied" in bake.message
    release = f"shipyard.dev/release=r-{failed.value.run.id[:8]}"
    for kind, api in (("Deployment", "apps/v1"), ("ConfigMap", "v1"), ("Service", "v1")):
        assert world.admin.list_objects(api, kind, world.namespace("staging"), release) == []
