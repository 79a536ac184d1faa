"""Faults the fault suite injects into the stack's real processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from shipyard.adapters.background import BackgroundProcess
from shipyard.adapters.kube_client import KubeClient

__all__ = ["restart_api_server"]


def restart_api_server(cluster_state: Path, admin_kubeconfig: Path, *,
                       ready_within: float = 120) -> float:
    """Stop the cluster's kube-apiserver (SIGTERM, as a restart of its machine would) and
    start it again with exactly its command and environment, as ``shipyard up`` had
    started it; return the seconds it answered no call. etcd, the controllers and the
    kubelet keep running: the workloads go on without it."""
    process = BackgroundProcess("kube-apiserver", cluster_state / "run")
    pid = process.pid()
    assert pid is not None, f"no kube-apiserver runs from {cluster_state}"
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    environ = dict(line.split(b"=", 1) for line in
                   Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in line)
    stopped = time.monotonic()
    assert process.stop(grace_seconds=20)
    process.spawn([os.fsdecode(a) for a in argv], cwd=cluster_state,
                  env={os.fsdecode(k): os.fsdecode(v) for k, v in environ.items()})
    client = KubeClient.from_kubeconfig(admin_kubeconfig)
    deadline = time.monotonic() + ready_within
    while not client.ready():
        assert time.monotonic() < deadline, "kube-apiserver did not come back"
        time.sleep(0.2)
    return time.monotonic() - stopped
