"""The environments board reads the cluster per namespace, not per cell, through the
process's short cache; a fake cluster reader counts what it is asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.adapters.kube_client import KubeError
from shipyard.settings import Settings
from shipyard.store import Ledger, Store
from ui.environments import ClusterUnavailable, read_board
from ui.ttl_cache import TtlCache

APPS = ("data", "discovery", "gateway")


def deployment(app: str, slot: str, *, ready: int = 2) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/version": "1.0",
              "shipyard.dev/track": "stable", "shipyard.dev/slot": slot}
    return {"metadata": {"name": f"{app}-{slot}", "generation": 1, "labels": labels},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": labels}}},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": ready,
                       "availableReplicas": ready, "readyReplicas": ready}}


def service(app: str, slot: str) -> dict[str, Any]:
    return {"metadata": {"name": app},
            "spec": {"selector": {"app.kubernetes.io/name": app, "shipyard.dev/slot": slot}}}


class FakeCluster:
    """Every app runs slot v001 in every namespace (gateway's pods not ready in prod);
    counts the connections and the reads, and fails a namespace when told to."""

    def __init__(self) -> None:
        self.connects = 0
        self.reads: list[tuple[str, str]] = []
        self.failing: set[str] = set()

    def connect(self) -> FakeCluster:
        self.connects += 1
        return self

    def deployments(self, namespace: str) -> list[dict[str, Any]]:
        self._read(namespace, "deployments")
        return [deployment(app, "v001", ready=0 if (app, namespace) == ("gateway", "shop-prod")
                           else 2) for app in APPS]

    def services(self, namespace: str) -> list[dict[str, Any]]:
        self._read(namespace, "services")
        return [service(app, "v001") for app in APPS]

    def _read(self, namespace: str, kind: str) -> None:
        self.reads.append((namespace, kind))
        if namespace in self.failing:
            raise KubeError(f"listing {kind} in {namespace}: 403 forbidden")


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'shipyard.db'}")
    ledger = Ledger(opened)
    for environment in ("staging", "prod"):
        for app in APPS[:2] if environment == "staging" else APPS:
            ledger.record_release(app=app, version="1.0", environment=environment,
                                  kind="deploy", digest="sha256:" + "1" * 64, actor="ada",
                                  why="test", slot="v001")
    yield opened
    opened.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", namespace_prefix="shop-",
                    environments=["staging", "prod"])


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


def test_each_environment_is_read_with_one_list_per_kind_whatever_the_apps(
        store: Store, settings: Settings, cluster: FakeCluster) -> None:
    board = read_board(store, settings, connect=cluster.connect)
    assert sorted(cluster.reads) == [
        ("shop-prod", "deployments"), ("shop-prod", "services"),
        ("shop-staging", "deployments"), ("shop-staging", "services")]
    assert cluster.connects == 1
    assert board.cluster_error == ""
    healthy = board.cells["discovery", "prod"]
    assert (healthy.health, healthy.shares) == ("healthy", {"discovery-v001": 1.0})
    assert [w.name for w in healthy.workloads] == ["discovery-v001"]
    assert board.cells["gateway", "prod"].health == "progressing"
    unreleased = board.cells["gateway", "staging"]
    assert (unreleased.health, unreleased.health_message) == ("missing",
                                                              "nothing released here")


def test_a_board_within_the_cache_time_asks_the_cluster_nothing(
        store: Store, settings: Settings, cluster: FakeCluster) -> None:
    clock = Clock()
    cache: TtlCache[tuple[str, str], list[dict[str, Any]]] = TtlCache(5, clock=clock)
    first = read_board(store, settings, cache, connect=cluster.connect)
    clock.now += 4
    again = read_board(store, settings, cache, connect=cluster.connect)
    assert (cluster.connects, len(cluster.reads)) == (1, 4)
    assert again.cells == first.cells
    clock.now += 1
    read_board(store, settings, cache, connect=cluster.connect)
    assert (cluster.connects, len(cluster.reads)) == (2, 8)


def test_with_the_cluster_away_the_releases_show_with_health_unknown_and_it_is_asked_again(
        store: Store, settings: Settings) -> None:
    tries = []

    def away() -> FakeCluster:
        tries.append(1)
        raise ClusterUnavailable("the API server of viewer.kubeconfig does not answer "
                                 "/readyz")

    cache: TtlCache[tuple[str, str], list[dict[str, Any]]] = TtlCache(5, clock=Clock())
    board = read_board(store, settings, cache, connect=away)
    assert len(tries) == 1  # once per board, not per environment
    assert board.cluster_error.endswith("does not answer /readyz")
    cell = board.cells["gateway", "prod"]
    assert (cell.release is not None, cell.health) == (True, "unknown")
    assert cell.health_message == board.cluster_error
    assert board.cells["gateway", "staging"].health == "missing"
    read_board(store, settings, cache, connect=away)
    assert len(tries) == 2  # the error was not kept


def test_a_namespace_that_cannot_be_read_leaves_its_cells_unknown_and_the_rest_live(
        store: Store, settings: Settings, cluster: FakeCluster) -> None:
    cluster.failing = {"shop-prod"}
    board = read_board(store, settings, connect=cluster.connect)
    assert board.cluster_error == ""
    assert {board.cells[app, "prod"].health for app in APPS} == {"unknown"}
    assert board.cells["data", "prod"].health_message == \
        "listing deployments in shop-prod: 403 forbidden"
    assert board.cells["data", "staging"].health == "healthy"
