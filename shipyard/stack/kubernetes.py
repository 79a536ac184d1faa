"""The local Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler from the multi-call binary, one component per process, and nodes that are
simulated by KWOK (always: cheap, for scale tests; tainted so only workloads that ask land
there) and, unless ``--nodes kwok``, a real one (containerd and a kubelet). Cluster DNS
(``shipyard.stack.cluster_dns``) answers for ``cluster.local`` on the node's address, and
the real node's kubelet hands that address to its pods.

A cluster named by ``KUBECONFIG`` that answers is used as it is: nothing local starts.

Either way, ``up`` then makes the settings' environments and their identities with the
cluster's admin kubeconfig (:mod:`shipyard.stack.environments`), which nothing else in
Shipyard uses: deploys and the UI open the identities.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shipyard.adapters.background import BackgroundProcess
from shipyard.adapters.debian import DebianError
from shipyard.adapters.go_build import KWOK_VERSION
from shipyard.adapters.host_firewall import FirewallError
from shipyard.adapters.host_network import NetworkError, ensure_local_address, remove_device
from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.adapters.kube_client import KubeError
from shipyard.adapters.kube_identity import identity_dir
from shipyard.adapters.pki import ClientIdentity, ClusterPKI
from shipyard.adapters.probe import http_ok
from shipyard.settings import Settings
from shipyard.stack.cluster_dns import IDENTITY as DNS_IDENTITY
from shipyard.stack.cluster_dns import RBAC as DNS_RBAC
from shipyard.stack.cluster_dns import ClusterDNSProcess
from shipyard.stack.component import ComponentFailed, ComponentStatus, Progress, UpResult
from shipyard.stack.environments import EnvironmentBootstrap, access_of
from shipyard.stack.real_node import NODE_NAME, RealNode

__all__ = ["KubernetesComponent", "NodeMode"]

NodeMode = Literal["auto", "real", "kwok"]

ADVERTISE_DEVICE = "shipyard0"
ADVERTISE_ADDRESS = "10.200.0.1"
API_PORT = 6443
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_API_ADDRESS = "10.96.0.1"
CLUSTER_CIDR = "10.244.0.0/16"
KWOK_NODE = "kwok-node-0"
START_TIMEOUT_SECONDS = 120

CLIENTS = (
    ClientIdentity("admin", "shipyard-admin", ("system:masters",)),
    ClientIdentity("kcm", "system:kube-controller-manager"),
    ClientIdentity("scheduler", "system:kube-scheduler"),
    ClientIdentity("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                   ("system:masters",)),
    ClientIdentity("kwok", "kwok", ("system:masters",)),
    ClientIdentity("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",)),
    ClientIdentity("kube-proxy", "system:kube-proxy"),
    DNS_IDENTITY,
)

# The stages KWOK v0.8.0 needs told explicitly (it no longer falls back to defaults): the
# files of its own module, so they match the binary.
KWOK_STAGES = ("node/fast/node-initialize.yaml",
               "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
               "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml",
               "pod/fast/pod-delete.yaml", "pod/chaos/pod-container-running-failed.yaml",
               "node/chaos/node-not-ready.yaml")


@dataclass
class KubernetesComponent:
    settings: Settings
    nodes: NodeMode = "auto"
    name: str = "kubernetes"
    _pki: ClusterPKI = field(init=False)

    def __post_init__(self) -> None:
        self._pki = ClusterPKI(self.state / "pki")

    @property
    def state(self) -> Path:
        return self.settings.stack_dir / "cluster"

    @property
    def bin_dir(self) -> Path:
        return self.state / "bin"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{ADVERTISE_ADDRESS}:{API_PORT}"

    def _process(self, name: str) -> BackgroundProcess:
        return BackgroundProcess(name, self.state / "run")

    def external(self) -> Path | None:
        """The cluster the settings name instead of a local one (``SHIPYARD_KUBECONFIG``,
        else ``KUBECONFIG``), if any."""
        if self.settings.kubeconfig is not None:
            return self.settings.kubeconfig
        named = os.environ.get("KUBECONFIG")
        return Path(named) if named else None

    # -- status -----------------------------------------------------------------------

    def status(self) -> ComponentStatus:
        external = self.external()
        kubeconfig = external or self.admin_kubeconfig
        if not kubeconfig.exists():
            return ComponentStatus(self.name, False, "", self.server, "not set up yet")
        try:
            cluster = KubeBootstrap.from_kubeconfig(kubeconfig)
            ready = cluster.client.ready()
            version = cluster.version() if ready else ""
        except KubeError as err:
            return ComponentStatus(self.name, False, "", str(kubeconfig), str(err))
        # Noted, not unhealthy: the cluster itself works, and `up` makes what is missing.
        missing = self._bootstrap(kubeconfig).missing()
        identities = (f"; no identity for {', '.join(missing)} (`shipyard up` makes it)"
                      if missing else "")
        if external:
            return ComponentStatus(self.name, ready, version, f"kubeconfig {kubeconfig}",
                                   ("external cluster" if ready else "API server not ready")
                                   + identities)
        if not ready:
            return ComponentStatus(self.name, False, "", f"kubeconfig {kubeconfig}",
                                   "API server not ready")
        dns = self._dns()
        answering = dns.answering()
        return ComponentStatus(
            self.name, answering, version, f"kubeconfig {kubeconfig}",
            f"nodes: {self._mode_file()}; cluster DNS {dns.address}:{dns.port} " +
            ("answering" if answering else "not answering (`shipyard up` starts it)")
            + identities)

    def _mode_file(self) -> str:
        try:
            return (self.state / "node-mode").read_text().strip()
        except OSError:
            return "?"

    # -- up ---------------------------------------------------------------------------

    def up(self, progress: Progress) -> UpResult:
        external = self.external()
        if external is not None:
            cluster = KubeBootstrap.from_kubeconfig(external)
            if not cluster.client.ready():
                raise ComponentFailed(self.name, f"KUBECONFIG={external} names a cluster that "
                                      "does not answer", fix="fix that cluster, or unset "
                                      "KUBECONFIG to use the local one")
            written = self._environments(external, progress)
            return UpResult(self.name, bool(written), f"using the cluster of "
                            f"KUBECONFIG={external} ({cluster.version()}); no local cluster "
                            f"started; {self._environments_said(written)}")
        if not (self.bin_dir / "k8s").exists():
            raise ComponentFailed(self.name, "the Kubernetes binaries are not built",
                                  fix="`shipyard up --only k8s-binaries` builds them")
        started: list[str] = []
        try:
            self._prepare(progress)
            started += self._control_plane(progress)
            started += self._cluster_dns(progress)
            started += self._kwok_nodes(progress)
        except (KubeError, NetworkError, OSError) as err:
            raise ComponentFailed(self.name, str(err)) from err
        mode, real_started = self._real_node(progress)
        started += real_started
        (self.state / "node-mode").write_text(mode)
        written = self._environments(self.admin_kubeconfig, progress)
        cluster = KubeBootstrap.from_kubeconfig(self.admin_kubeconfig)
        environments = self._environments_said(written)
        if not started:
            return UpResult(self.name, bool(written), f"{cluster.version()} already running "
                            f"({mode} nodes); admin kubeconfig {self.admin_kubeconfig}; "
                            f"{environments}")
        return UpResult(self.name, True, f"{cluster.version()} with {mode} nodes; started "
                        f"{', '.join(started)}; admin kubeconfig {self.admin_kubeconfig}; "
                        f"{environments}")

    def _bootstrap(self, admin_kubeconfig: Path) -> EnvironmentBootstrap:
        return EnvironmentBootstrap(self.settings, admin_kubeconfig)

    def _environments(self, admin_kubeconfig: Path, progress: Progress) -> list[str]:
        """Make the settings' environments and their identities (the admin kubeconfig's
        one use); returns the identities written."""
        bootstrap = self._bootstrap(admin_kubeconfig)
        progress(f"environments {', '.join(bootstrap.access.environments)} and their "
                 "identities")
        try:
            return bootstrap.ensure()
        except (KubeError, OSError) as err:
            raise ComponentFailed(self.name, f"making the environments: {err}",
                                  fix="check that this kubeconfig may create namespaces, "
                                  "service accounts, roles and role bindings") from err

    def _environments_said(self, written: list[str]) -> str:
        access = access_of(self.settings)
        namespaces = ", ".join(access.namespace(env) for env in access.environments)
        where = identity_dir(self.settings.home)
        return (f"environments {namespaces} (restricted); identities in {where}"
                + (f" (new tokens: {', '.join(written)})" if written else ""))

    def _real(self) -> RealNode:
        return RealNode(self.state, self.bin_dir, self._pki, self.server, ADVERTISE_ADDRESS,
                        SERVICE_CIDR, self.settings.registry, cluster_dns=ADVERTISE_ADDRESS)

    def _dns(self) -> ClusterDNSProcess:
        # The node's address: pods reach it through their bridge's gateway (the host), and
        # it exists before any pod, unlike the bridge's own address.
        return ClusterDNSProcess(self.state / "cluster-dns.kubeconfig", ADVERTISE_ADDRESS)

    def _cluster_dns(self, progress: Progress) -> list[str]:
        admin = KubeBootstrap.from_kubeconfig(self.admin_kubeconfig)
        for manifest in DNS_RBAC:
            admin.create(manifest)
        dns = self._dns()
        argv = dns.argv()
        started = self._start_program("cluster-dns", argv, dns.answering, progress,
                                      Path(argv[0]).parent, env=dns.env(),
                                      fingerprint=dns.fingerprint())
        return ["cluster-dns"] if started else []

    def _real_node(self, progress: Progress) -> tuple[str, list[str]]:
        """Add the real node unless asked for KWOK only. In ``auto`` mode a machine that
        cannot run it falls back to KWOK nodes alone, saying why; asked for ``real``, the
        failure is the component's."""
        if self.nodes == "kwok":
            return "kwok", []
        try:
            started = self._real().up(self._start_program, progress)
            progress(f"waiting for node {NODE_NAME} to be Ready")
            KubeBootstrap.from_kubeconfig(self.admin_kubeconfig).wait_for_node_ready(
                NODE_NAME, timeout_seconds=START_TIMEOUT_SECONDS)
        except (ComponentFailed, KubeError, DebianError, FirewallError, OSError,
                subprocess.CalledProcessError) as err:
            self._real().down(self._stop)
            if self.nodes == "real":
                if isinstance(err, ComponentFailed):
                    raise
                raise ComponentFailed(self.name, f"the real node did not start: {err}",
                                      fix="see the kubelet and containerd logs in "
                                      f"{self.state / 'run'}; --nodes kwok works without "
                                      "it") from err
            progress(f"real node unavailable here ({err}); using KWOK nodes only")
            return f"kwok (real node unavailable: {str(err)[:200]})", []
        return "real+kwok", started

    def _stop(self, name: str) -> bool:
        return self._process(name).stop(grace_seconds=20)

    def _prepare(self, progress: Progress) -> None:
        progress("certificates and kubeconfigs")
        self._pki.ensure(server_names=["localhost", "kubernetes", "kubernetes.default",
                                       "kubernetes.default.svc",
                                       "kubernetes.default.svc.cluster.local"],
                         server_ips=["127.0.0.1", ADVERTISE_ADDRESS, SERVICE_API_ADDRESS],
                         clients=CLIENTS)
        for client in ("admin", "kcm", "scheduler", "kwok", DNS_IDENTITY.name):
            self._pki.kubeconfig(client, self.server, self.state / f"{client}.kubeconfig")
        ensure_local_address(ADVERTISE_DEVICE, ADVERTISE_ADDRESS)

    def _start(self, name: str, args: list[str], ready: Callable[[], bool],
               progress: Progress) -> bool:
        """Start cluster component ``name`` (a name the multi-call binary or KWOK
        answers to) unless it runs; wait until ``ready``. Returns whether it started now."""
        return self._start_program(name, [name, *args], ready, progress, self.bin_dir)

    def _start_program(self, name: str, argv: list[str], ready: Callable[[], bool],
                       progress: Progress, bin_dir: Path, *,
                       env: Mapping[str, str] | None = None, fingerprint: str = "") -> bool:
        """Start ``argv`` (its program in ``bin_dir``) as ``name`` unless it runs; wait until
        ``ready``. With a ``fingerprint`` (of its command and configuration), one that runs
        but was started with another is restarted. Returns whether it started now."""
        process = self._process(name)
        recorded = self.state / "run" / f"{name}.fingerprint"
        if fingerprint and process.running() and _read(recorded) != fingerprint:
            progress(f"restarting {name}: its command, configuration or code changed")
            process.stop(grace_seconds=20)
        if process.running() and ready():
            return False
        if not process.running():
            progress(f"starting {name}")
            process.spawn([str(bin_dir / argv[0]), *argv[1:]], cwd=self.state, env=env)
            if fingerprint:
                recorded.write_text(fingerprint)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not ready():
            if not process.running() or time.monotonic() > deadline:
                process.stop()
                raise ComponentFailed(f"{self.name}/{name}", "did not become ready",
                                      fix="see its log; `shipyard down --only kubernetes` "
                                      "then `shipyard up` starts over",
                                      log_tail=process.log_tail(),
                                      log_file=str(process.log_file))
            time.sleep(0.3)
        return True

    def _control_plane(self, progress: Progress) -> list[str]:
        pki, state = self._pki, self.state
        started = []
        if self._start("etcd", [
            "--name=shipyard", f"--data-dir={state / 'etcd'}",
            "--listen-client-urls=http://127.0.0.1:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=shipyard=http://127.0.0.1:2380",
            # A throw-away local cluster: durability is not worth an fsync per write.
            "--unsafe-no-fsync=true", "--auto-compaction-retention=1",
            "--quota-backend-bytes=4294967296", "--log-level=warn",
        ], lambda: http_ok("http://127.0.0.1:2379/health", expect='"health":"true"'),
                progress):
            started.append("etcd")
        admin = KubeBootstrap.from_kubeconfig(self.admin_kubeconfig)
        if self._start("kube-apiserver", [
            f"--advertise-address={ADVERTISE_ADDRESS}", f"--bind-address={ADVERTISE_ADDRESS}",
            f"--secure-port={API_PORT}", "--etcd-servers=http://127.0.0.1:2379",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--client-ca-file={pki.path('ca', 'crt')}",
            f"--tls-cert-file={pki.path('apiserver', 'crt')}",
            f"--tls-private-key-file={pki.path('apiserver', 'key')}",
            f"--kubelet-client-certificate={pki.path('apiserver-kubelet-client', 'crt')}",
            f"--kubelet-client-key={pki.path('apiserver-kubelet-client', 'key')}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.path('sa', 'key')}",
            f"--service-account-signing-key-file={pki.path('sa', 'key')}",
            f"--cert-dir={state / 'apiserver-certs'}",
        ], admin.client.ready, progress):
            started.append("kube-apiserver")
        if self._start("kube-controller-manager", [
            f"--kubeconfig={state / 'kcm.kubeconfig'}",
            f"--authentication-kubeconfig={state / 'kcm.kubeconfig'}",
            f"--authorization-kubeconfig={state / 'kcm.kubeconfig'}",
            "--bind-address=127.0.0.1", "--secure-port=10257",
            "--use-service-account-credentials=true", "--controllers=*",
            f"--root-ca-file={pki.path('ca', 'crt')}",
            f"--service-account-private-key-file={pki.path('sa', 'key')}",
            f"--cluster-signing-cert-file={pki.path('ca', 'crt')}",
            f"--cluster-signing-key-file={pki.path('ca', 'key')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allocate-node-cidrs=true",
            f"--cluster-cidr={CLUSTER_CIDR}", "--node-cidr-mask-size=24",
            "--leader-elect=false",
            # Client rate limits raised from 20/30: a 200-replica rollout takes 3 s, not 16.
            "--kube-api-qps=100", "--kube-api-burst=200",
        ], lambda: http_ok("https://127.0.0.1:10257/healthz", expect="ok"), progress):
            started.append("kube-controller-manager")
        if self._start("kube-scheduler", [
            f"--kubeconfig={state / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={state / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={state / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=false",
        ], lambda: http_ok("https://127.0.0.1:10259/healthz", expect="ok"), progress):
            started.append("kube-scheduler")
        return started

    def _kwok_nodes(self, progress: Progress) -> list[str]:
        stages = self.state / "kwok-stages.yaml"
        if not stages.exists():
            stages.write_text(_kwok_stages())
        admin = KubeBootstrap.from_kubeconfig(self.admin_kubeconfig)
        started = self._start("kwok", [
            f"--kubeconfig={self.state / 'kwok.kubeconfig'}", f"--config={stages}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.245.0.0/16", "--node-ip=10.200.0.2",
            "--node-lease-duration-seconds=40",
        ], self._process("kwok").running, progress)
        admin.create({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": KWOK_NODE,
                         "annotations": {"kwok.x-k8s.io/node": "fake",
                                         "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"kubernetes.io/hostname": KWOK_NODE,
                                    "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok"}},
            "status": {"allocatable": {"cpu": "1000", "memory": "4Ti", "pods": "5000"},
                       "capacity": {"cpu": "1000", "memory": "4Ti", "pods": "5000"}},
        })
        # Only workloads that ask for simulated pods land here (scale tests); set on a node
        # kept from an earlier cluster too.
        admin.patch_node(KWOK_NODE, {"spec": {"taints": [
            {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]}})
        progress(f"waiting for node {KWOK_NODE} to be Ready")
        admin.wait_for_node_ready(KWOK_NODE, timeout_seconds=START_TIMEOUT_SECONDS)
        return ["kwok"] if started else []

    # -- down -------------------------------------------------------------------------

    def down(self, *, purge: bool = False) -> bool:
        stopped = False
        if (self.state / "containerd").exists():
            stopped = self._real().down(self._stop)
        for name in ("cluster-dns", "kwok", "kube-scheduler", "kube-controller-manager",
                     "kube-apiserver", "etcd"):
            stopped = self._process(name).stop(grace_seconds=20) or stopped
        with contextlib.suppress(NetworkError):
            stopped = remove_device(ADVERTISE_DEVICE) or stopped
        if purge:
            for path in (self.state / "etcd", self.state / "pki", self.state / "run",
                         self.state / "containerd", self.state / "kubelet",
                         self.state / "cni", self.state / "images"):
                if path.exists():
                    shutil.rmtree(path)
                    stopped = True
        return stopped


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _kwok_stages() -> str:
    done = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                          check=True, timeout=60)
    root = Path(done.stdout.strip()) / f"sigs.k8s.io/kwok@{KWOK_VERSION}/kustomize/stage"
    return "".join(f"---\n{(root / stage).read_text()}" for stage in KWOK_STAGES)
