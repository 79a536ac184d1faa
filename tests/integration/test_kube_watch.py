"""ObjectWatch against the local cluster's API server: the first list, then each change as
it happens, as the API's JSON; stop() ends a watch that is waiting for events."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.adapters.kube_watch import SERVICES, EventType, ObjectWatch

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self) -> None:
        self.listed: list[list[dict[str, Any]]] = []
        self.events: list[tuple[EventType, dict[str, Any]]] = []

    def replace(self, objects: list[dict[str, Any]]) -> None:
        self.listed.append(objects)

    def apply(self, event: EventType, obj: dict[str, Any]) -> None:
        self.events.append((event, obj))

    def seen(self, event: EventType, namespace: str, name: str) -> bool:
        return any(kind == event and obj["metadata"]["namespace"] == namespace and
                   obj["metadata"]["name"] == name for kind, obj in self.events)


def eventually(check: Any, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def watching(real_cluster: Path) -> Iterator[tuple[Kube, Recorder, ObjectWatch, str]]:
    kube = Kube.from_kubeconfig(real_cluster)
    admin = KubeBootstrap(kube.client)
    namespace = f"watch-{uuid.uuid4().hex[:8]}"
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    recorder = Recorder()
    errors: list[str] = []
    watch = ObjectWatch(kube.client, SERVICES, on_error=errors.append)
    thread = threading.Thread(target=watch.run, args=(recorder,), daemon=True)
    thread.start()
    try:
        assert eventually(lambda: bool(recorder.listed)), errors
        yield kube, recorder, watch, namespace
    finally:
        watch.stop()
        thread.join(10)
        admin.delete_namespace(namespace)
    assert not thread.is_alive(), "stop() ends the watch"


def service(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"port": 80}]}}


def test_the_first_list_holds_every_service_as_json(watching):
    _, recorder, _, _ = watching
    names = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in recorder.listed[0]}
    assert ("default", "kubernetes") in names
    assert all("spec" in s for s in recorder.listed[0])


def test_a_created_then_deleted_service_arrives_as_two_events(watching):
    kube, recorder, _, namespace = watching
    KubeBootstrap(kube.client).create(service(namespace, "web"))
    assert eventually(lambda: recorder.seen("ADDED", namespace, "web"))
    added = next(obj for kind, obj in recorder.events if kind == "ADDED" and
                 obj["metadata"]["name"] == "web")
    assert added["spec"]["clusterIP"]
    kube.delete(service(namespace, "web"))
    assert eventually(lambda: recorder.seen("DELETED", namespace, "web"))
