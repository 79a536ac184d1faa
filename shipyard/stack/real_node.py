"""A real node for the local cluster: a standalone containerd (Debian's, CRI on, its own
root, state and socket), bridge CNI, a kubelet and kube-proxy from the multi-call binary.
Pods really run and answer HTTP; the pause image is built here, since no registry serves
one, and images come from the local registry over plain HTTP.

Proven on these machines (cgroup v1, no CAP_SYS_RESOURCE, FORWARD policy DROP): see the
notes on each setting.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shipyard.adapters.debian import apt_install
from shipyard.adapters.host_firewall import (
    allow_pod_bridge,
    remove_kubelet_chains,
    remove_pod_bridge_rules,
)
from shipyard.adapters.oci_image import write_oci_image
from shipyard.adapters.pki import ClusterPKI
from shipyard.adapters.probe import http_ok
from shipyard.stack.component import ComponentFailed, Progress

__all__ = ["NODE_NAME", "POD_BRIDGE", "RealNode"]

NODE_NAME = "shipyard-node"
POD_BRIDGE = "shipyardcni0"
POD_CIDR = "10.88.0.0/24"
PAUSE_IMAGE = "shipyard.local/pause:3.10"
KUBELET_ATTEMPTS = 3
PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "conntrack")


class Starter(Protocol):
    """Starts a program unless it runs (restarting it if its ``fingerprint`` changed);
    returns whether it started now."""

    def __call__(self, name: str, argv: list[str], ready: Callable[[], bool],
                 progress: Progress, bin_dir: Path, *,
                 env: Mapping[str, str] | None = None, fingerprint: str = "") -> bool: ...


@dataclass
class RealNode:
    state: Path
    bin_dir: Path
    pki: ClusterPKI
    server: str
    node_ip: str
    service_cidr: str
    registry: str
    cluster_dns: str = ""
    """The address pods send DNS questions to (the kubelet's ``clusterDNS``), if any."""

    @property
    def socket(self) -> Path:
        return self.state / "containerd" / "containerd.sock"

    def up(self, start: Starter, progress: Progress) -> list[str]:
        """Install what is missing, write the configurations, start containerd, kubelet
        and kube-proxy (each unless it runs); returns what was started."""
        apt_install(PACKAGES, progress)
        self._configure()
        _sysctl("net.bridge.bridge-nf-call-iptables", "1")
        _sysctl("net.ipv4.ip_forward", "1")
        # Service addresses stay on this machine even before kube-proxy has a rule for
        # them (the default route would send them out).
        subprocess.run(["ip", "route", "replace", self.service_cidr, "dev", "shipyard0"],
                       check=True, capture_output=True, timeout=30)
        allow_pod_bridge(POD_BRIDGE)
        started = []
        if start("containerd", ["containerd", "--config",
                                str(self.state / "containerd" / "config.toml")],
                 self._containerd_ready, progress, Path("/usr/bin")):
            started.append("containerd")
        self._import_pause_image(progress)
        kubelet = [
            "kubelet", f"--config={self.state / 'kubelet' / 'config.yaml'}",
            f"--kubeconfig={self.state / 'kubelet.kubeconfig'}",
            f"--root-dir={self.state / 'kubelet' / 'root'}",
            f"--cert-dir={self.state / 'kubelet' / 'pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={self.node_ip}",
        ]
        # The kubelet reads its configuration once: a changed one (cluster DNS, say) takes
        # a restart. Running pods are left alone by it.
        configured = "\0".join([*kubelet, (self.state / "kubelet" / "config.yaml").read_text()])
        # containerd answers `ctr version` before its CRI server has initialized; a kubelet
        # started in that gap exits at once ("server is not initialized yet"). Seen after a
        # containerd restart with a node's worth of old containers to clean up.
        for attempt in range(1, KUBELET_ATTEMPTS + 1):
            try:
                if start("kubelet", kubelet,
                         lambda: http_ok("http://127.0.0.1:10248/healthz", expect="ok"),
                         progress, self.bin_dir,
                         fingerprint=hashlib.sha256(configured.encode()).hexdigest()):
                    started.append("kubelet")
                break
            except ComponentFailed:
                if attempt == KUBELET_ATTEMPTS:
                    raise
                progress("the kubelet stopped at once (containerd's CRI is still starting); "
                         "starting it again")
                time.sleep(3)
        if start("kube-proxy", ["kube-proxy",
                                f"--config={self.state / 'kube-proxy' / 'config.yaml'}"],
                 lambda: http_ok("http://127.0.0.1:10256/healthz"), progress, self.bin_dir):
            started.append("kube-proxy")
        return started

    def _containerd_ready(self) -> bool:
        done = subprocess.run(["ctr", "--address", str(self.socket), "version"],
                              capture_output=True, text=True, check=False, timeout=10)
        return done.returncode == 0

    def _import_pause_image(self, progress: Progress) -> None:
        tarball = self.state / "images" / "pause.tar"
        if not tarball.exists():
            write_oci_image(tarball, PAUSE_IMAGE, {"/pause": self.bin_dir / "pause"},
                            ["/pause"])
        listed = subprocess.run(["ctr", "--address", str(self.socket), "-n", "k8s.io",
                                 "images", "ls", "-q"], capture_output=True, text=True,
                                check=True, timeout=30).stdout.split()
        if PAUSE_IMAGE not in listed:
            progress("importing the pause image into containerd")
            subprocess.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", "images",
                            "import", str(tarball)], check=True, capture_output=True,
                           timeout=120)

    def _configure(self) -> None:
        s, p = self.state, self.pki
        for directory in ("containerd", "cni/net.d", "kubelet", "kube-proxy", "images",
                          f"containerd/certs.d/{self.registry}"):
            (s / directory).mkdir(parents=True, exist_ok=True)
        p.ensure_serving("kubelet-serving", NODE_NAME, names=[NODE_NAME, "localhost"],
                         ips=["127.0.0.1", self.node_ip])
        p.kubeconfig("kubelet", self.server, s / "kubelet.kubeconfig")
        p.kubeconfig("kube-proxy", self.server, s / "kube-proxy.kubeconfig")
        _write(s / "containerd" / "config.toml", f'''version = 2
root = "{s / 'containerd' / 'root'}"
state = "{s / 'containerd' / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{s / 'containerd' / 'opt'}"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE_IMAGE}"
    stream_server_address = "127.0.0.1"
    # Root here lacks CAP_SYS_RESOURCE: without this runc fails with
    # "nsexec: failed to update /proc/self/oom_score_adj: Permission denied".
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "{s / 'cni' / 'net.d'}"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "{s / 'containerd' / 'certs.d'}"
''')
        _write(s / "containerd" / "certs.d" / self.registry / "hosts.toml",
            f'server = "http://{self.registry}"\n\n[host."http://{self.registry}"]\n'
            '  capabilities = ["pull", "resolve"]\n')
        _write(s / "cni" / "net.d" / "10-shipyard-bridge.conflist", json.dumps({
            "cniVersion": "0.4.0", "name": "shipyard-bridge", "plugins": [
                {"type": "bridge", "bridge": POD_BRIDGE, "isGateway": True, "ipMasq": False,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(s / "cni" / "ipam"),
                          "ranges": [[{"subnet": POD_CIDR, "gateway": "10.88.0.1"}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}}]}, indent=2))
        _write(s / "kubelet" / "config.yaml", f"""\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://{self.socket}
imageServiceEndpoint: unix://{self.socket}
cgroupDriver: cgroupfs          # containerd 1.6 has no RuntimeConfig RPC: must match it
failSwapOn: false
address: {self.node_ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: {p.path('kubelet-serving', 'crt')}
tlsPrivateKeyFile: {p.path('kubelet-serving', 'key')}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {p.path('ca', 'crt')}}}
authorization: {{mode: Webhook}}
clusterDomain: cluster.local
{f"clusterDNS: [{self.cluster_dns}]" if self.cluster_dns else "# no clusterDNS"}
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100  # never collect the imported pause image
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
podLogsDir: {s / 'kubelet' / 'pod-logs'}
# A ConfigMap change (an app's fault file, which the chaos gate's fault actions write)
# reaches a pod's volume at the pod's next periodic sync: within 10 to 15 s rather than
# the default minute and a half. A node of a few dozen pods syncs them at little cost.
syncFrequency: 10s
""")
        _write(s / "kube-proxy" / "config.yaml", f"""\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {s / 'kube-proxy.kubeconfig'}}}
hostnameOverride: {NODE_NAME}
mode: iptables
clusterCIDR: {POD_CIDR}
bindAddress: {self.node_ip}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# 127.0.0.1 too: the host reaches a NodePort Service at 127.0.0.1:<nodePort> (kube-proxy
# sets route_localnet for it), and nothing listens beyond loopback and the node address.
nodePortAddresses: ["{self.node_ip}/32", "127.0.0.1/32"]
iptables: {{localhostNodePorts: true}}
conntrack: {{maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
""")

    def down(self, stop: Callable[[str], bool]) -> bool:
        stopped = False
        for name in ("kube-proxy", "kubelet"):
            stopped = stop(name) or stopped
        if (self.bin_dir / "kube-proxy").exists():
            subprocess.run([str(self.bin_dir / "kube-proxy"), "--cleanup"],
                           capture_output=True, check=False, timeout=60)
        stopped = _remove_containers(self.socket) or stopped
        stopped = stop("containerd") or stopped
        _unmount_under(self.state)
        remove_pod_bridge_rules(POD_BRIDGE)
        remove_kubelet_chains()
        subprocess.run(["ip", "link", "delete", POD_BRIDGE], capture_output=True,
                       check=False, timeout=30)
        for leftover in ("/var/lib/cni/results", "/run/containerd/runc/k8s.io"):
            shutil.rmtree(leftover, ignore_errors=True)
        return stopped


RUNC_ROOT = "/run/containerd/runc/k8s.io"


def _remove_containers(socket: Path) -> bool:
    """Kill and delete the pods' containers and their shims: they live in sessions of their
    own, so stopping containerd leaves them running."""
    listed = subprocess.run(["runc", "--root", RUNC_ROOT, "list", "-q"], capture_output=True,
                            text=True, check=False, timeout=60)
    containers = listed.stdout.split() if listed.returncode == 0 else []
    for container in containers:
        subprocess.run(["runc", "--root", RUNC_ROOT, "delete", "--force", container],
                       capture_output=True, check=False, timeout=60)
    shims = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and (
                str(socket).encode() in argv):
            shims.append(int(cmdline.parent.name))
    # Whatever still runs in the pods' cgroups (containers whose runc state is gone).
    leftovers = {int(pid) for procs in Path("/sys/fs/cgroup").glob("*/kubepods*/**/cgroup.procs")
                 for pid in _read(procs).split()}
    for pid in {*shims, *leftovers}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return bool(containers or shims or leftovers)


def _unmount_under(root: Path) -> None:
    """Unmount what containerd and the kubelet mounted under ``root`` (pod shm, overlay
    rootfs, volumes), deepest first, so the state can be deleted."""
    mounts = [line.split()[1] for line in _read(Path("/proc/self/mounts")).splitlines()]
    prefix = str(root) + "/"
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False,
                       timeout=30)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it: kube-proxy exits when its
    configuration file changes, even to the same content."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _sysctl(key: str, value: str) -> None:
    Path("/proc/sys", *key.split(".")).write_text(value)
