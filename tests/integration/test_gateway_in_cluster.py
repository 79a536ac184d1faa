"""The gateway becomes ready in the local cluster next to discovery, as the apps' own
templates deploy them: the gateway finds discovery by the headless Service's name
(``DISCOVERY_URL=http://discovery-peers:8761``), which only cluster DNS resolves, registers
with every replica and is ready once it holds discovery's registry.

The images are built from this checkout's apps the way ci builds them (hermetic, wheels
from the context) and pushed to the local registry; the templates are rendered with
``shipyard.domain.manifests`` and applied with ``Kube.apply``.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipyard.adapters.app_image import build_app_image, local_packages, prepare_build_context
from shipyard.adapters.docker_engine import DockerEngine, default_engine_url
from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.domain.manifests import BakeValues, parse_manifests, render_manifests
from stages.catalog import read_descriptor
from tests.support.stack import PIP_CACHE, PROJECT

pytestmark = pytest.mark.integration

REGISTRY = "127.0.0.1:5000"
VERSION = f"0.0.{uuid.uuid4().int % 100000}"
DISCOVERY_REPLICAS = 2


@pytest.fixture(scope="module")
def images(real_cluster: Path, delivery_stack: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """discovery and gateway, built from this checkout and pushed to the local registry."""
    engine = DockerEngine(default_engine_url())
    work = tmp_path_factory.mktemp("contexts")
    built = {}
    for app in ("discovery", "gateway"):
        context = prepare_build_context(PROJECT / "apps" / app, work / app,
                                        packages=local_packages(PROJECT / "apps"),
                                        pip_cache=Path(PIP_CACHE), on_line=lambda line: None)
        reference = f"{REGISTRY}/shipyard-test/{app}:{VERSION}"
        build_app_image(engine, context, reference, version=VERSION,
                        labels={"dev.shipyard.commit": "0" * 40}, on_line=lambda line: None)
        engine.push(reference)
        built[app] = reference
    return built


@dataclass(frozen=True)
class Deployed:
    kube: Kube
    kubectl: list[str]
    namespace: str


def deploy(kube: Kube, namespace: str, app: str, image: str, replicas: int) -> str:
    """Render ``app``'s templates for ``namespace`` and apply them; returns the
    Deployment's name."""
    templates = {p.name: p.read_text() for p in (PROJECT / "apps" / app / "deploy").glob("*.j2")}
    values = BakeValues(app=read_descriptor(PROJECT, app), environment="test",
                        namespace=namespace, version=VERSION, image=image,
                        release="dns-e2e", replicas=replicas)
    for manifest in parse_manifests(render_manifests(templates, values)):
        kube.apply(manifest)
    return values.name


@pytest.fixture(scope="module")
def deployed(real_cluster: Path, images: dict[str, str]) -> Iterator[Deployed]:
    kube = Kube.from_kubeconfig(real_cluster)
    kubectl = [str(real_cluster.parent / "bin" / "kubectl"), f"--kubeconfig={real_cluster}"]
    namespace = f"gw-{uuid.uuid4().hex[:8]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        name = deploy(kube, namespace, "discovery", images["discovery"], DISCOVERY_REPLICAS)
        status = kube.wait_for_rollout(namespace, name, timeout_seconds=240)
        assert status.done, status.message
        deploy(kube, namespace, "gateway", images["gateway"], 1)
        yield Deployed(kube, kubectl, namespace)
    finally:
        KubeBootstrap(kube.client).delete_namespace(namespace)


def test_the_gateway_becomes_ready_next_to_discovery(deployed):
    status, problems = deployed.kube.follow_rollout(deployed.namespace, "gateway",
                                                    timeout_seconds=240)
    assert status.done, f"{status.message}; {[str(p) for p in problems]}"


def test_the_gateway_registered_with_every_discovery_replica(deployed):
    """The headless name resolved to each ready discovery pod, and the gateway's
    registration went to every one of them."""
    assert deployed.kube.wait_for_rollout(deployed.namespace, "gateway",
                                          timeout_seconds=240).done
    pods = deployed.kube.pods(deployed.namespace, "app.kubernetes.io/name=discovery")
    assert len(pods) == DISCOVERY_REPLICAS
    for pod in pods:
        path = (f"/api/v1/namespaces/{deployed.namespace}/pods/{pod['metadata']['name']}"
                ":8761/proxy/eureka/apps/gateway")
        done = subprocess.run([*deployed.kubectl, "get", "--raw", path], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        instances = json.loads(done.stdout)["instances"]
        assert instances, f"{pod['metadata']['name']} holds no gateway registration"
