"""The environments board's cost in cluster calls and time per render, with and without
the cache.

    .venv/bin/python bench/ui_board.py [--apps 8] [--environments staging,prod]
                                       [--latency-ms 5] [--renders 50] [--tabs 8]

No cluster is needed: the board reads a fake cluster that answers every call (opening the
identity with ``/readyz``, each LIST) after a fixed ``--latency-ms``, as a nearby API
server would, and counts them. The store is a fresh SQLite file holding a release of each
of ``--apps`` apps in each environment. Scenarios:

- ``off``: ``SHIPYARD_UI_CLUSTER_CACHE_SECONDS=0``, every render reads the cluster;
- ``5 s, every 1 s`` and ``every 0.1 s``: the default cache, renders that far apart (one
  viewer's live board, or ten tabs' at once); the clock is moved by hand, so the figures
  do not depend on how fast this machine renders;
- ``--tabs`` renders at once on a cold cache, in threads, with and without the cache.

Prints per scenario the cluster calls per render, and the time per render (p50 and max,
the store's reads included). For comparison it prints what the board cost before it read
per environment: 1 + 2 calls per cell (a LIST of the app's Deployments and a GET of its
Service), computed from the same latency, not measured.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipyard.settings import Settings
from shipyard.store import Ledger, Store
from ui.environments import ClusterReader, read_board
from ui.ttl_cache import TtlCache

Objects = list[dict[str, Any]]


class SlowCluster:
    """Every app's Deployment (slot v001, ready) and Service in every namespace, each
    call after ``latency`` seconds; counts the calls (thread-safe)."""

    def __init__(self, apps: list[str], latency: float) -> None:
        self.apps = apps
        self.latency = latency
        self.calls = 0
        self._lock = threading.Lock()

    def connect(self) -> ClusterReader:
        self._call()  # /readyz
        return self

    def deployments(self, namespace: str) -> Objects:
        self._call()
        return [{"metadata": {"name": f"{app}-v001", "generation": 1,
                              "labels": {"app.kubernetes.io/name": app}},
                 "spec": {"replicas": 2, "template": {"metadata": {"labels": {
                     "app.kubernetes.io/name": app, "shipyard.dev/slot": "v001"}}}},
                 "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                            "availableReplicas": 2, "readyReplicas": 2}}
                for app in self.apps]

    def services(self, namespace: str) -> Objects:
        self._call()
        return [{"metadata": {"name": app}, "spec": {"selector": {
            "app.kubernetes.io/name": app, "shipyard.dev/slot": "v001"}}}
            for app in self.apps]

    def _call(self) -> None:
        time.sleep(self.latency)
        with self._lock:
            self.calls += 1


class HandClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sequential(store: Store, settings: Settings, cluster: SlowCluster, renders: int,
               ttl: float, apart: float) -> tuple[float, list[float]]:
    """``renders`` boards one after another, ``apart`` seconds of the cache's clock
    between them: calls per render, and each render's milliseconds."""
    clock = HandClock()
    cache: TtlCache[tuple[str, str], Objects] = TtlCache(ttl, clock=clock)
    before = cluster.calls
    times = []
    for _ in range(renders):
        started = time.perf_counter()
        read_board(store, settings, cache, connect=cluster.connect)
        times.append((time.perf_counter() - started) * 1000)
        clock.now += apart
    return (cluster.calls - before) / renders, times


def at_once(store: Store, settings: Settings, cluster: SlowCluster, tabs: int,
            ttl: float) -> tuple[float, list[float]]:
    """``tabs`` boards at once on a cold cache: calls per render, each render's ms."""
    cache: TtlCache[tuple[str, str], Objects] = TtlCache(ttl)
    before = cluster.calls
    times: list[float] = []
    start = threading.Barrier(tabs)

    def render() -> None:
        start.wait()
        started = time.perf_counter()
        read_board(store, settings, cache, connect=cluster.connect)
        times.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=render) for _ in range(tabs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (cluster.calls - before) / tabs, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=8)
    parser.add_argument("--environments", default="staging,prod")
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--renders", type=int, default=50)
    parser.add_argument("--tabs", type=int, default=8)
    args = parser.parse_args()

    apps = [f"app{n:02d}" for n in range(args.apps)]
    environments = args.environments.split(",")
    home = Path(tempfile.mkdtemp(prefix="shipyard-bench-board-"))
    settings = Settings(home=home, environments=environments)
    store = Store.open(f"sqlite:///{home / 'shipyard.db'}")
    ledger = Ledger(store)
    for environment in environments:
        for app in apps:
            ledger.record_release(app=app, version="1.0", environment=environment,
                                  kind="deploy", digest="sha256:" + "1" * 64, actor="bench",
                                  why="bench", slot="v001")
    cluster = SlowCluster(apps, args.latency_ms / 1000)
    cells = len(apps) * len(environments)
    read_board(store, settings, connect=cluster.connect)  # warm-up: imports, the store

    print(f"{len(apps)} apps x {len(environments)} environments = {cells} cells; "
          f"{args.latency_ms:g} ms per cluster call")
    print(f"{'scenario':34} {'renders':>7} {'calls/render':>12} {'p50 ms':>8} {'max ms':>8}")
    old_calls = 1 + 2 * cells
    print(f"{'before: per cell (cluster only)':34} {'-':>7} {old_calls:12.2f} "
          f"{old_calls * args.latency_ms:8.1f} {'-':>8}")
    scenarios: list[tuple[str, Callable[[], tuple[float, list[float]]]]] = [
        ("off (0 s)", lambda: sequential(store, settings, cluster, args.renders, 0, 1)),
        ("5 s, a render every 1 s",
         lambda: sequential(store, settings, cluster, args.renders, 5, 1)),
        ("5 s, a render every 0.1 s",
         lambda: sequential(store, settings, cluster, args.renders, 5, 0.1)),
        (f"off, {args.tabs} tabs at once",
         lambda: at_once(store, settings, cluster, args.tabs, 0)),
        (f"5 s, {args.tabs} tabs at once (cold)",
         lambda: at_once(store, settings, cluster, args.tabs, 5)),
    ]
    for name, run in scenarios:
        calls, times = run()
        print(f"{name:34} {len(times):7} {calls:12.2f} {statistics.median(times):8.1f} "
              f"{max(times):8.1f}")
    store.close()


if __name__ == "__main__":
    main()
