"""The environments board: app by environment → the release recorded there, its health in
the cluster, since when, the traffic split between versions, and the delivery under way.

The store says what should run (the newest release of each app in each environment);
the cluster says what does (its Deployments and Service, judged by
:mod:`shipyard.domain.environments`). When the cluster cannot be read the board still
shows the releases, with the health unknown and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import KubeError
from shipyard.domain.environments import (
    Health,
    Workload,
    judge_health,
    traffic_shares,
    workload_of,
)
from shipyard.domain.labels import APP_LABEL, label_selector
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.store import Ledger, ReleaseRecord, RunRecord, Store
from shipyard.store.browse import RunBrowser, RunFilters
from stages.cluster import open_viewer

__all__ = ["Board", "Cell", "read_board"]


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


def read_board(store: Store, settings: Settings) -> Board:
    """Read the board (blocking: the store and the cluster)."""
    ledger = Ledger(store)
    browser = RunBrowser(store)
    recorded = ledger.all_current_releases()
    apps = sorted({app for app, _ in recorded} | set(browser.distinct_values()["app"]))
    made = list(settings.environments)  # what `shipyard up` made, in delivery order
    environments = [*made, *sorted({env for _, env in recorded} - set(made))]
    kube, cluster_error = open_viewer(settings)
    cells: dict[tuple[str, str], Cell] = {}
    for app in apps:
        for environment in environments:
            release = recorded.get((app, environment))
            expected = None
            if release is not None:
                expected = f"{app}-{release.slot}" if release.slot else app
            if kube is None:
                health: Health = "unknown" if release else "missing"
                message = cluster_error if release else "nothing released here"
                cells[app, environment] = Cell(app, environment, release, health, message)
                continue
            try:
                cells[app, environment] = _live_cell(kube, settings, app, environment,
                                                     release, expected)
            except KubeError as err:
                cells[app, environment] = Cell(app, environment, release, "unknown",
                                               str(err))
    return Board(apps, environments, cells, _under_way(browser, apps), cluster_error)


def _live_cell(kube: Kube, settings: Settings, app: str, environment: str,
               release: ReleaseRecord | None, expected: str | None) -> Cell:
    namespace = settings.namespace_for(environment)
    deployments = kube.list_objects("apps/v1", "Deployment", namespace,
                                    label_selector({APP_LABEL: app}))
    workloads = tuple(workload_of(d) for d in deployments)
    service = kube.get({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": app, "namespace": namespace}})
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
