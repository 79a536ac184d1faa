"""The environments board: app by environment → the release recorded there, its health in
the cluster, since when, the traffic split between versions, and the delivery under way.

The store says what should run (the newest release of each app in each environment);
the cluster says what does (its Deployments and Service, judged by
:mod:`shipyard.domain.environments`). When the cluster cannot be read the board still
shows the releases, with the health unknown and why.

The cluster is read per environment, not per cell: one LIST of the Deployments carrying
an app label and one LIST of the Services, whatever the number of apps. The reads go
through the process's short cache (:class:`~ui.ttl_cache.TtlCache`,
``SHIPYARD_UI_CLUSTER_CACHE_SECONDS``), keyed by namespace and kind, so a board rendered
again within that time, by anyone, asks the API server nothing, and tabs asking at once
wait for one read. The read-only identity is opened (and ``/readyz`` asked) only when a
read misses the cache, once per board.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import KubeError
from shipyard.domain.environments import (
    Health,
    Workload,
    judge_health,
    traffic_shares,
    workload_of,
)
from shipyard.domain.labels import APP_LABEL
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.store import Ledger, ReleaseRecord, RunRecord, Store
from shipyard.store.browse import RunBrowser, RunFilters
from stages.cluster import open_viewer as open_viewer_kube
from ui.ttl_cache import TtlCache

__all__ = ["Board", "Cell", "ClusterCache", "ClusterReader", "ClusterUnavailable",
           "KubeReader", "cluster_cache", "read_board"]

Objects = list[dict[str, Any]]
ClusterCache = TtlCache[tuple[str, str], Objects]
"""What the board read of the cluster, by (namespace, kind)."""


class ClusterReader(Protocol):
    """What the board reads of one namespace (blocking; :class:`KubeError` when it
    cannot)."""

    def deployments(self, namespace: str) -> Objects:
        """Every Deployment of an app (carrying the app label)."""

    def services(self, namespace: str) -> Objects:
        """Every Service."""


class ClusterUnavailable(KubeError):
    """The cluster cannot be read at all: the read-only identity is not set up, or the
    API server does not answer."""


@dataclass(frozen=True)
class KubeReader:
    """:class:`ClusterReader` over the Kubernetes API: one LIST per namespace and kind."""

    kube: Kube

    def deployments(self, namespace: str) -> Objects:
        return self.kube.list_objects("apps/v1", "Deployment", namespace, APP_LABEL)

    def services(self, namespace: str) -> Objects:
        return self.kube.list_objects("v1", "Service", namespace)


def cluster_cache(settings: Settings) -> ClusterCache:
    """The cache one process's boards share (``SHIPYARD_UI_CLUSTER_CACHE_SECONDS``)."""
    return TtlCache(settings.ui_cluster_cache_seconds)


@dataclass(frozen=True)
class Cell:
    app: str
    environment: str
    release: ReleaseRecord | None
    health: Health
    health_message: str
    shares: dict[str, float] = field(default_factory=dict)
    workloads: tuple[Workload, ...] = ()


@dataclass(frozen=True)
class Board:
    apps: list[str]
    environments: list[str]
    cells: dict[tuple[str, str], Cell]
    under_way: dict[str, tuple[RunRecord, list[str]]]
    """Per app, the newest delivery still running or waiting, and its active stages."""
    cluster_error: str = ""


def read_board(store: Store, settings: Settings, cache: ClusterCache | None = None, *,
               connect: Callable[[], ClusterReader] | None = None) -> Board:
    """Read the board (blocking: the store and the cluster). ``cache``: the process's
    (:func:`cluster_cache`); none reads the cluster anew. ``connect`` opens the cluster
    (default: as the read-only identity), raising :class:`ClusterUnavailable`."""
    ledger = Ledger(store)
    browser = RunBrowser(store)
    recorded = ledger.all_current_releases()
    apps = sorted({app for app, _ in recorded} | set(browser.distinct_values()["app"]))
    made = list(settings.environments)  # what `shipyard up` made, in delivery order
    environments = [*made, *sorted({env for _, env in recorded} - set(made))]
    cluster = _Cluster(connect or partial(open_viewer, settings),
                       cache if cache is not None else TtlCache(0))
    cells: dict[tuple[str, str], Cell] = {}
    for environment in environments:
        namespace = settings.namespace_for(environment)
        try:
            deployments = cluster.read(namespace, "deployments")
            services = cluster.read(namespace, "services")
        except KubeError as err:
            for app in apps:
                cells[app, environment] = _unread_cell(app, environment,
                                                       recorded.get((app, environment)),
                                                       err)
            continue
        for app in apps:
            cells[app, environment] = _live_cell(app, environment,
                                                 recorded.get((app, environment)),
                                                 deployments, services)
    return Board(apps, environments, cells, _under_way(browser, apps), cluster.error)


def open_viewer(settings: Settings) -> ClusterReader:
    """The cluster as the installation's read-only identity (never the admin's), once
    its API server answers ``/readyz``; else :class:`ClusterUnavailable` saying why."""
    kube, why = open_viewer_kube(settings)
    if kube is None:
        raise ClusterUnavailable(why)
    return KubeReader(kube)


class _Cluster:
    """One board's reads: kept ones from the cache; for the others the cluster is
    opened at the first, once (a cluster that cannot be opened is not tried again for
    this board, and its error is the board's)."""

    def __init__(self, connect: Callable[[], ClusterReader], cache: ClusterCache) -> None:
        self._connect = connect
        self._cache = cache
        self._reader: ClusterReader | None = None
        self._unavailable: ClusterUnavailable | None = None

    @property
    def error(self) -> str:
        return str(self._unavailable) if self._unavailable else ""

    def read(self, namespace: str, kind: str) -> Objects:
        if self._unavailable is not None:
            raise self._unavailable
        try:
            return self._cache.get((namespace, kind), partial(self._read, namespace, kind))
        except ClusterUnavailable as err:  # found by this board, or by the one it waited on
            self._unavailable = err
            raise

    def _read(self, namespace: str, kind: str) -> Objects:
        if self._reader is None:
            self._reader = self._connect()
        return self._reader.deployments(namespace) if kind == "deployments" \
            else self._reader.services(namespace)


def _unread_cell(app: str, environment: str, release: ReleaseRecord | None,
                 err: KubeError) -> Cell:
    """A cell whose namespace could not be read: the release without its health. With
    the cluster away altogether, a cell without a release is simply empty."""
    if isinstance(err, ClusterUnavailable):
        return Cell(app, environment, release, "unknown" if release else "missing",
                    str(err) if release else "nothing released here")
    return Cell(app, environment, release, "unknown", str(err))


def _live_cell(app: str, environment: str, release: ReleaseRecord | None,
               deployments: Objects, services: Objects) -> Cell:
    expected = None
    if release is not None:
        expected = f"{app}-{release.slot}" if release.slot else app
    workloads = tuple(workload_of(d) for d in deployments
                      if (d.get("metadata", {}).get("labels") or {}).get(APP_LABEL) == app)
    service = next((s for s in services if s.get("metadata", {}).get("name") == app), None)
    selector = dict((service or {}).get("spec", {}).get("selector") or {})
    health, message = judge_health(expected, workloads)
    return Cell(app, environment, release, health, message,
                traffic_shares(selector, workloads), workloads)


def _under_way(browser: RunBrowser, apps: list[str]) -> dict[str, tuple[RunRecord, list[str]]]:
    found: dict[str, tuple[RunRecord, list[str]]] = {}
    for state in (State.RUNNING, State.WAITING):
        for run in browser.page(RunFilters(state=state), limit=50).runs:
            if run.app in apps and run.app not in found and run.pipeline != "ci":
                full = browser.store.get_run(run.id)
                active = [s.ref for s in full.stages
                          if s.state in (State.RUNNING, State.WAITING)]
                found[run.app] = (full, active)
    return found
