"""The local stack's Prometheus: Debian's ``prometheus`` on 127.0.0.1, its data under the
stack directory, scraping the cluster's pods and Shipyard's own ``/metrics``.

Pods are found as Kubernetes discovery (``kubernetes_sd_configs``, role pod) finds them,
and scraped at their address on the container port named ``http`` (every app's template
names its port so). Debian's Prometheus is built without Kubernetes discovery, so a small
process of the stack's, ``prometheus-discovery`` (:mod:`shipyard.adapters.pod_discovery`),
lists the pods for Prometheus's HTTP discovery with the same meta labels: the relabelling
below works unchanged on a Prometheus that has Kubernetes discovery
(``scrape_config(kubeconfig=...)`` writes that variant). Only pods
Shipyard deployed (``app.kubernetes.io/managed-by=shipyard``) or that ask for it
(annotation ``prometheus.io/scrape: "true"``) are kept. Each target is labelled with what
the canary's PromQL selects on (:data:`shipyard.domain.promql.TARGET_LABELS`): the pod's
``namespace`` and ``pod``, ``app`` from ``app.kubernetes.io/name``, and ``track`` from
``shipyard.dev/track``.

Prometheus reads the cluster as an identity of its own, a ServiceAccount that may only
get, list and watch pods (cluster-wide: one Prometheus serves every installation sharing
the cluster, as the registry does); its token comes from the TokenRequest API and is
renewed, and Prometheus told to reload, by ``up`` when half its life is gone.

With ``SHIPYARD_PROMETHEUS_URL`` set, the stack uses that Prometheus and starts none.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from shipyard.adapters.background import BackgroundProcess
from shipyard.adapters.debian import DebianError, apt_install
from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.adapters.kube_client import KubeClient, KubeError
from shipyard.adapters.kube_identity import cluster_of, token_expiry, write_identity
from shipyard.adapters.probe import http_ok
from shipyard.adapters.prometheus import Prometheus, PrometheusError
from shipyard.adapters.secret_files import private_dir
from shipyard.domain.labels import APP_LABEL, MANAGED_BY, MANAGED_BY_LABEL, TRACK_LABEL
from shipyard.settings import Settings
from shipyard.stack.component import ComponentFailed, ComponentStatus, Progress, UpResult

__all__ = ["ACCOUNT", "NAMESPACE", "PrometheusComponent", "scrape_config"]

START_TIMEOUT_SECONDS = 60
NAMESPACE = "shipyard-monitoring"
ACCOUNT = "prometheus"
ROLE = "shipyard-prometheus"
UI_TARGET = "127.0.0.1:8000"
"""Where ``shipyard ui`` listens by default; Prometheus scrapes its ``/metrics``."""


def scrape_config(*, scrape_seconds: float, discovery_url: str | None = None,
                  kubeconfig: Path | None = None,
                  ui_target: str = UI_TARGET) -> dict[str, Any]:
    """Prometheus's configuration: Shipyard's UI at ``ui_target`` every 15 s, and the
    cluster's pods every ``scrape_seconds``: found through HTTP discovery at
    ``discovery_url`` (the stack's own, for Debian's Prometheus), or through Kubernetes
    discovery with ``kubeconfig`` (a Prometheus built with it). Either way the targets
    carry the same meta labels and go through the same relabelling."""
    interval = f"{round(scrape_seconds * 1000)}ms"
    jobs: list[dict[str, Any]] = [{
        "job_name": "shipyard",
        "scrape_interval": "15s",
        "scrape_timeout": "10s",
        "static_configs": [{"targets": [ui_target]}],
    }]
    pods: dict[str, Any] = {"job_name": "kubernetes-pods"}
    if discovery_url is not None:
        pods["http_sd_configs"] = [{"url": discovery_url, "refresh_interval": "2s"}]
    elif kubeconfig is not None:
        pods["kubernetes_sd_configs"] = [{"role": "pod", "kubeconfig_file": str(kubeconfig)}]
    else:
        return {"global": {"scrape_interval": interval, "scrape_timeout": interval,
                           "evaluation_interval": "15s"}, "scrape_configs": jobs}
    pods["relabel_configs"] = [
        {"source_labels": [_meta_label(MANAGED_BY_LABEL),
                           "__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
         "regex": f"{MANAGED_BY};.*|.*;true", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"],
         "regex": "http|metrics", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running",
         "action": "keep"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": [_meta_label(APP_LABEL)], "target_label": "app"},
        {"source_labels": [_meta_label(TRACK_LABEL)], "target_label": "track"},
        {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
         "regex": "(.+)", "target_label": "__metrics_path__"},
    ]
    jobs.insert(0, pods)
    return {"global": {"scrape_interval": interval, "scrape_timeout": interval,
                       "evaluation_interval": "15s"},
            "scrape_configs": jobs}


def identity_manifests() -> list[dict[str, Any]]:
    """Prometheus's ServiceAccount and what it may do: get, list and watch pods."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": ACCOUNT, "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": ROLE},
         "rules": [{"apiGroups": [""], "resources": ["pods"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": ROLE},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]},
    ]


@dataclass
class PrometheusComponent:
    settings: Settings
    name: str = "prometheus"

    @property
    def state(self) -> Path:
        return self.settings.stack_dir / "prometheus"

    @property
    def process(self) -> BackgroundProcess:
        return BackgroundProcess("prometheus", self.state)

    @property
    def server(self) -> Prometheus:
        return Prometheus(self.settings.prometheus_base_url, timeout_seconds=5.0)

    @property
    def discovery(self) -> BackgroundProcess:
        return BackgroundProcess("prometheus-discovery", self.state)

    @property
    def discovery_address(self) -> str:
        """Where the pods' HTTP discovery answers: the port after Prometheus's."""
        host, _, port = self.settings.prometheus.rpartition(":")
        return f"{host}:{int(port) + 1}"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "prometheus.kubeconfig"

    def status(self) -> ComponentStatus:
        server = self.server
        if not server.answers():
            return ComponentStatus(self.name, False, "", server.base_url, "not answering")
        try:
            version = server.version()
            targets = server.active_targets()
        except PrometheusError as err:
            return ComponentStatus(self.name, False, "", server.base_url, str(err))
        up = sum(1 for t in targets if t.get("health") == "up")
        owner = ("external (SHIPYARD_PROMETHEUS_URL)" if self.settings.prometheus_url
                 else "started by shipyard" if self.process.running()
                 else "already running")
        return ComponentStatus(self.name, True, version, server.base_url,
                               f"{owner}; {up} of {len(targets)} targets up"
                               + ("" if self.settings.prometheus_url
                                  else f"; data {self.state / 'data'}"))

    def up(self, progress: Progress) -> UpResult:
        server = self.server
        if self.settings.prometheus_url:
            if not server.answers():
                raise ComponentFailed(self.name, f"SHIPYARD_PROMETHEUS_URL names "
                                      f"{server.base_url}, which does not answer /-/ready",
                                      fix="start it, or unset SHIPYARD_PROMETHEUS_URL to "
                                      "run the stack's own")
            return UpResult(self.name, False, f"using the Prometheus at {server.base_url}")
        try:
            apt_install(["prometheus"], progress)
        except DebianError as err:
            raise ComponentFailed(self.name, str(err)) from err
        private_dir(self.state)
        identity_changed = self._ensure_identity(progress)
        has_cluster = self.kubeconfig.exists()
        if has_cluster:
            self._start_discovery(identity_changed, progress)
        config = self.state / "prometheus.yml"
        wanted = yaml.safe_dump(scrape_config(
            scrape_seconds=self.settings.prometheus_scrape_seconds,
            discovery_url=f"http://{self.discovery_address}/targets" if has_cluster
            else None), sort_keys=False)
        config_changed = not config.exists() or config.read_text() != wanted
        if config_changed:
            config.write_text(wanted)
        if server.answers():
            pid = self.process.pid()
            if pid is not None and (config_changed or identity_changed):
                os.kill(pid, signal.SIGHUP)  # re-read the configuration and kubeconfig
                return UpResult(self.name, True, f"Prometheus at {server.base_url} reloaded "
                                "its configuration")
            return UpResult(self.name, False, f"Prometheus at {server.base_url} already "
                            "answers")
        progress(f"starting Prometheus on {self.settings.prometheus}")
        self.process.spawn([
            "prometheus", f"--config.file={config}",
            f"--storage.tsdb.path={self.state / 'data'}",
            "--storage.tsdb.retention.time=15d", "--storage.tsdb.retention.size=2GB",
            f"--web.listen-address={self.settings.prometheus}",
            # The UI's links and the graph links in canary reports.
            f"--web.external-url=http://{self.settings.prometheus}/",
            "--log.level=warn"])
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.answers():
            if not self.process.running() or time.monotonic() > deadline:
                self.process.stop()
                raise ComponentFailed(self.name, f"Prometheus did not answer at "
                                      f"{server.base_url}", fix="is the port taken? see the "
                                      "log", log_tail=self.process.log_tail(),
                                      log_file=str(self.process.log_file))
            time.sleep(0.2)
        return UpResult(self.name, True, f"Prometheus started at {server.base_url}, "
                        f"scraping every {self.settings.prometheus_scrape_seconds:g}s")

    def down(self, *, purge: bool = False) -> bool:
        stopped = self.process.stop()
        stopped = self.discovery.stop() or stopped
        if purge and self.state.exists():
            shutil.rmtree(self.state, ignore_errors=True)
            stopped = True
        return stopped

    def _start_discovery(self, restart: bool, progress: Progress) -> None:
        """Start the pods' HTTP discovery unless it answers (again with a new token)."""
        url = f"http://{self.discovery_address}/targets"
        if restart:
            self.discovery.stop()
        elif self.discovery.running() and http_ok(url):
            return
        self.discovery.stop()
        progress(f"starting the pods' discovery for Prometheus on {self.discovery_address}")
        self.discovery.spawn([sys.executable, "-m", "shipyard.adapters.pod_discovery",
                              "--kubeconfig", str(self.kubeconfig),
                              "--listen", self.discovery_address])
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not http_ok(url):
            if not self.discovery.running() or time.monotonic() > deadline:
                self.discovery.stop()
                raise ComponentFailed(self.name, f"the pods' discovery did not answer at "
                                      f"{url}", fix="see the log",
                                      log_tail=self.discovery.log_tail(),
                                      log_file=str(self.discovery.log_file))
            time.sleep(0.1)

    def _token_taken(self) -> bool:
        """Whether the API server still takes the kubeconfig's token: a cluster made anew,
        or the account deleted and made again, makes a token that has not expired void."""
        try:
            status, _ = KubeClient.from_kubeconfig(self.kubeconfig).call(
                "GET", "/api/v1/pods", query={"limit": "1"}, timeout=10)
        except KubeError:
            return False
        return status == 200

    def _ensure_identity(self, progress: Progress) -> bool:
        """Apply Prometheus's identity and write its kubeconfig unless its token lives
        more than half its life on; False (and no pods job) without a cluster."""
        admin = self.settings.kubeconfig_file
        if not admin.exists():
            progress(f"no cluster ({admin} is missing): scraping Shipyard only")
            return False
        lifetime = timedelta(days=self.settings.identity_token_days)
        expires = token_expiry(self.kubeconfig) if self.kubeconfig.exists() else None
        if expires is not None and expires > datetime.now(UTC) + lifetime / 2 \
                and self._token_taken():
            return False
        progress("giving Prometheus a read-only identity (pods: get, list, watch)")
        try:
            connection = KubeClient.from_kubeconfig(admin)
            kube = Kube(connection)
            for manifest in identity_manifests():
                kube.apply(manifest)
            token, _ = KubeBootstrap(connection).request_token(
                NAMESPACE, ACCOUNT, seconds=int(lifetime.total_seconds()))
        except KubeError as err:
            raise ComponentFailed(self.name, f"could not set up Prometheus's identity: "
                                  f"{err}", fix="is the cluster up? `shipyard status`") \
                from err
        write_identity(self.kubeconfig, cluster_of(admin),
                       f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}", token)
        return True


def _meta_label(label: str) -> str:
    """The service discovery's meta label of pod label ``label``."""
    cleaned = "".join(c if c.isalnum() else "_" for c in label)
    return f"__meta_kubernetes_pod_label_{cleaned}"
